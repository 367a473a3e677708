// linkgate_native FastPath: the native serving loop (issue 6).
//
// One thread, one epoll. It owns the metadata listeners, accepts (in batches), reads each
// connection's SO_MARK and answers the requests it has a precomputed answer for: a complete,
// plain `GET <target> HTTP/1.1` whose headers are all among a few (Host, User-Agent, Accept,
// Accept-Encoding, Connection, Metadata-Flavor, Metadata, and an IMDSv2 token JavaScript verified
// for the mark) and whose (mark, header flags, target) JavaScript has put into the cache. The answer is written with one sendmsg; a keep-alive
// connection stays here, idle, until its next request.
//
// Everything else — a miss, a partial or unusual request, a response that could not be written
// at once, a connection whose binding went away — is handed to JavaScript with the bytes already
// read (and any unwritten answer), through a thread-safe function; from then on the connection is
// JavaScript's. JavaScript may give a keep-alive connection back (adopt: a dup of its fd).
//
// The cache is JavaScript's to fill (put) and to empty (change: on every registry change, which
// also marks connections of unbound marks stale: their next request goes to JavaScript, which
// refuses it). Commands reach the thread through a queue and an eventfd; the thread alone touches
// the cache and the connection table.
#include <napi.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

namespace linkgate {

namespace {

constexpr uint8_t kFlavorGoogle = 1;  // Metadata-Flavor: Google
constexpr uint8_t kMetadataTrue = 2;  // Metadata: true (any case)
constexpr size_t kReadBuf = 16384;
constexpr int kAcceptBatch = 64;

int64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool TokenChar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

bool IEquals(const char* a, size_t alen, const char* lower) {
  size_t n = std::strlen(lower);
  if (alen != n) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = static_cast<unsigned char>(a[i]);
    if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c | 0x20);
    if (c != static_cast<unsigned char>(lower[i])) return false;
  }
  return true;
}

}  // namespace

// One parsed request (ParseRequest). `length` is what it occupies in the buffer.
struct Parsed {
  size_t length = 0;
  const char* target = nullptr;
  size_t targetLen = 0;
  const char* token = nullptr;  // X-aws-ec2-metadata-token's value, when sent
  size_t tokenLen = 0;
  uint8_t flags = 0;
  bool close = false;
};

// 1: a complete request this loop may answer (out filled); 0: anything else (incomplete,
// unusual, too big): JavaScript decides. Must agree with fastPathFlags() in src/pipeline/fastpath.ts.
int ParseRequest(const char* buf, size_t len, size_t maxHeader, Parsed* out) {
  size_t limit = len < maxHeader ? len : maxHeader;
  const char* end = static_cast<const char*>(memmem(buf, limit, "\r\n\r\n", 4));
  if (end == nullptr) return 0;
  size_t headLen = static_cast<size_t>(end - buf) + 4;
  if (headLen < 4 || std::memcmp(buf, "GET /", 5) != 0) return 0;
  const char* p = buf + 4;
  const char* lineEnd = static_cast<const char*>(memmem(buf, headLen, "\r\n", 2));
  const char* sp = static_cast<const char*>(memchr(p, ' ', static_cast<size_t>(lineEnd - p)));
  if (sp == nullptr) return 0;
  for (const char* q = p; q < sp; q++) {
    unsigned char c = static_cast<unsigned char>(*q);
    if (c < 0x21 || c > 0x7e) return 0;
  }
  if (static_cast<size_t>(lineEnd - sp) != 9 || std::memcmp(sp, " HTTP/1.1", 9) != 0) return 0;
  out->target = p;
  out->targetLen = static_cast<size_t>(sp - p);
  out->flags = 0;
  out->close = false;
  out->token = nullptr;
  out->tokenLen = 0;
  bool seen[8] = {false, false, false, false, false, false, false, false};
  const char* line = lineEnd + 2;
  const char* stop = buf + headLen - 2;  // the final CRLF
  while (line < stop) {
    const char* le = static_cast<const char*>(memmem(line, static_cast<size_t>(stop + 2 - line), "\r\n", 2));
    if (le == nullptr || le == line) return 0;
    const char* colon = nullptr;
    for (const char* q = line; q < le; q++) {
      unsigned char c = static_cast<unsigned char>(*q);
      if (c != '\t' && (c < 0x20 || c > 0x7e)) return 0;  // bare CR/LF, NUL, non-ASCII
      if (colon == nullptr && c == ':') colon = q;
    }
    if (colon == nullptr || colon == line) return 0;
    for (const char* q = line; q < colon; q++)
      if (!TokenChar(static_cast<unsigned char>(*q))) return 0;
    const char* v = colon + 1;
    const char* ve = le;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    size_t nlen = static_cast<size_t>(colon - line);
    size_t vlen = static_cast<size_t>(ve - v);
    int which;
    if (IEquals(line, nlen, "host")) which = 0;
    else if (IEquals(line, nlen, "user-agent")) which = 1;
    else if (IEquals(line, nlen, "accept")) which = 2;
    else if (IEquals(line, nlen, "accept-encoding")) which = 3;
    else if (IEquals(line, nlen, "connection")) which = 4;
    else if (IEquals(line, nlen, "metadata-flavor")) which = 5;
    else if (IEquals(line, nlen, "metadata")) which = 6;
    else if (IEquals(line, nlen, "x-aws-ec2-metadata-token")) which = 7;
    else return 0;
    if (seen[which]) return 0;
    seen[which] = true;
    if (which == 4) {
      if (IEquals(v, vlen, "close")) out->close = true;
      else if (!IEquals(v, vlen, "keep-alive")) return 0;
    } else if (which == 5) {
      if (vlen != 6 || std::memcmp(v, "Google", 6) != 0) return 0;
      out->flags |= kFlavorGoogle;
    } else if (which == 6) {
      if (!IEquals(v, vlen, "true")) return 0;
      out->flags |= kMetadataTrue;
    } else if (which == 7) {
      if (vlen == 0) return 0;
      out->token = v;
      out->tokenLen = vlen;
    }
    line = le + 2;
  }
  if (!seen[0]) return 0;
  out->length = headLen;
  return 1;
}

namespace {

struct Entry {
  std::string head;  // status line, headers, Content-Length line
  std::string body;
};

// What one cached answer counts against the budget: its bytes, its key, and a little overhead.
size_t EntryBytes(const std::string& key, const Entry& e) { return e.head.size() + e.body.size() + key.size() + 64; }

struct Conn {
  bool active = false;
  bool stale = false;
  bool served = false;
  bool registered = false;  // in the epoll set (a fresh connection is read once before it is)
  bool adopted = false;     // a dup of a JavaScript socket's fd
  uint32_t mark = 0;
  int64_t at = 0;
};

enum class CmdType { AddListener, RemoveListener, Put, Change, Adopt, AllowToken, Stop, Quit };

struct Cmd {
  explicit Cmd(CmdType t) : type(t) {}
  CmdType type;
  int fd = -1;
  uint32_t mark = 0;
  std::string key;
  std::shared_ptr<Entry> entry;
  std::vector<uint32_t> marks;  // Change: unbound marks
  std::vector<uint32_t> drop;   // Change: marks whose answers go
  bool all = false;             // Change: every answer goes
  int64_t expiresAt = 0;        // AllowToken: ms since the epoch
};

// Handoff state bits (the callback's third argument).
constexpr int kStale = 1;       // the mark was unbound since the connection was accepted
constexpr int kCloseAfter = 2;  // close once `out` is written (the client asked to)

struct Handoff {
  int fd;
  uint32_t mark;
  int state;
  std::string out;
  std::string rest;
  std::shared_ptr<std::atomic<int64_t>> inflight;  // the loop's count of handoffs JavaScript has not taken yet
};

// Handoffs JavaScript has not taken yet above which the loop stops accepting (until half are
// taken): a flood of misses must not pile connections up faster than JavaScript answers them.
constexpr int64_t kMaxInflight = 1024;
// How long accepting pauses when the process is out of descriptors or memory (EMFILE, ENFILE, …).
constexpr int64_t kPauseOnErrorMs = 100;

std::string KeyOf(uint32_t mark, uint8_t flags, const char* target, size_t len) {
  std::string k;
  k.reserve(5 + len);
  k.push_back(static_cast<char>(mark >> 24));
  k.push_back(static_cast<char>(mark >> 16));
  k.push_back(static_cast<char>(mark >> 8));
  k.push_back(static_cast<char>(mark));
  k.push_back(static_cast<char>(flags));
  k.append(target, len);
  return k;
}

}  // namespace

class FastPath : public Napi::ObjectWrap<FastPath> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FastPath",
                       {InstanceMethod("addListener", &FastPath::AddListener),
                        InstanceMethod("removeListener", &FastPath::RemoveListener),
                        InstanceMethod("put", &FastPath::Put), InstanceMethod("change", &FastPath::Change),
                        InstanceMethod("adopt", &FastPath::Adopt), InstanceMethod("allowToken", &FastPath::AllowToken), InstanceMethod("stop", &FastPath::Stop),
                        InstanceMethod("close", &FastPath::Close), InstanceMethod("stats", &FastPath::Stats)});
  }

  explicit FastPath(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FastPath>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      Napi::TypeError::New(env, "new FastPath(options)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value handoff = o.Get("handoff");
    if (!handoff.IsFunction()) {
      Napi::TypeError::New(env, "options.handoff must be a function").ThrowAsJavaScriptException();
      return;
    }
    auto num = [&](const char* name, double dflt) {
      Napi::Value v = o.Get(name);
      return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
    };
    auto str = [&](const char* name) {
      Napi::Value v = o.Get(name);
      return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
    };
    maxHeader_ = static_cast<size_t>(num("maxHeaderBytes", 16384));
    headerTimeoutMs_ = static_cast<int64_t>(num("headerTimeoutMs", 10000));
    keepAliveTimeoutMs_ = static_cast<int64_t>(num("keepAliveTimeoutMs", 5000));
    cacheBudget_ = static_cast<size_t>(num("cacheBytes", 64.0 * 1024 * 1024));
    keepAliveSuffix_ = str("keepAliveSuffix");
    closeSuffix_ = str("closeSuffix");
    timeoutResponse_ = str("timeoutResponse");
    int64_t shortest = headerTimeoutMs_ > 0 ? headerTimeoutMs_ : 1000;
    if (keepAliveTimeoutMs_ > 0 && keepAliveTimeoutMs_ < shortest) shortest = keepAliveTimeoutMs_;
    sweepMs_ = static_cast<int>(shortest / 4 < 50 ? 50 : (shortest / 4 > 1000 ? 1000 : shortest / 4));

    ep_ = epoll_create1(EPOLL_CLOEXEC);
    ev_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ep_ < 0 || ev_ < 0) {
      Napi::Error::New(env, std::string("fast path: ") + std::strerror(errno)).ThrowAsJavaScriptException();
      return;
    }
    EpollAdd(ev_, EPOLLIN);

    tsfn_ = Napi::ThreadSafeFunction::New(env, handoff.As<Napi::Function>(), "linkgate-fastpath", 0, 1);
    tsfn_.Unref(env);
    napi_add_env_cleanup_hook(env, &FastPath::Cleanup, this);
    cleanupHook_ = true;
    env_ = env;
    thread_ = std::thread([this] { Loop(); });
  }

  ~FastPath() override { Shutdown(); }

 private:
  static void Cleanup(void* self) {
    auto* fp = static_cast<FastPath*>(self);
    fp->cleanupHook_ = false;
    fp->Shutdown();
  }

  // Ends the thread (closing what it holds) and releases the thread-safe function. Idempotent.
  void Shutdown() {
    if (thread_.joinable()) {
      Push(Cmd(CmdType::Quit));
      thread_.join();
    }
    if (tsfnLive_) {
      tsfnLive_ = false;
      tsfn_.Release();
    }
    if (cleanupHook_) {
      cleanupHook_ = false;
      napi_remove_env_cleanup_hook(env_, &FastPath::Cleanup, this);
    }
    if (ep_ >= 0) close(ep_);
    if (ev_ >= 0) close(ev_);
    ep_ = ev_ = -1;
  }

  // Watches `fd` (level-triggered) for `events`; false when epoll refuses.
  bool EpollAdd(int fd, uint32_t events) {
    epoll_event e{};
    e.events = events;
    e.data.fd = fd;
    return epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &e) == 0;
  }

  // Queues a command; wakes the loop only when the queue was empty (the loop reads the eventfd
  // before it takes the whole queue, so a command queued behind another is never missed): the
  // fifty-odd puts of a pre-rendered tree cost one wake-up, not fifty.
  void Push(Cmd&& c) {
    bool wake;
    {
      std::lock_guard<std::mutex> g(mu_);
      wake = cmds_.empty();
      cmds_.push_back(std::move(c));
    }
    if (!wake) return;
    uint64_t one = 1;
    ssize_t r = write(ev_, &one, sizeof(one));
    (void)r;
  }

  // False once closed: calls after close() do nothing (a registry change during shutdown must not
  // throw into its emitter); a listener fd passed then is closed.
  bool Running(Napi::Env) { return thread_.joinable(); }

  static bool FdArg(const Napi::CallbackInfo& info, size_t i, int* fd) {
    if (info.Length() <= i || !info[i].IsNumber()) {
      Napi::TypeError::New(info.Env(), "fd must be a number").ThrowAsJavaScriptException();
      return false;
    }
    int64_t v = info[i].As<Napi::Number>().Int64Value();
    if (v < 0 || v > 0x7fffffff) {
      Napi::RangeError::New(info.Env(), "fd out of range").ThrowAsJavaScriptException();
      return false;
    }
    *fd = static_cast<int>(v);
    return true;
  }

  static bool MarkArg(const Napi::CallbackInfo& info, size_t i, uint32_t* mark) {
    if (info.Length() <= i || !info[i].IsNumber()) {
      Napi::TypeError::New(info.Env(), "mark must be a number").ThrowAsJavaScriptException();
      return false;
    }
    double d = info[i].As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d))) {
      Napi::RangeError::New(info.Env(), "mark must be an unsigned 32-bit integer").ThrowAsJavaScriptException();
      return false;
    }
    *mark = static_cast<uint32_t>(d);
    return true;
  }

  // addListener(fd): the loop accepts on it from now on, and closes it on removeListener/close.
  Napi::Value AddListener(const Napi::CallbackInfo& info) {
    int fd;
    if (!FdArg(info, 0, &fd)) return info.Env().Undefined();
    if (!Running(info.Env())) {
      close(fd);
      return info.Env().Undefined();
    }
    Cmd c(CmdType::AddListener);
    c.fd = fd;
    Push(std::move(c));
    return info.Env().Undefined();
  }

  Napi::Value RemoveListener(const Napi::CallbackInfo& info) {
    int fd;
    if (!FdArg(info, 0, &fd) || !Running(info.Env())) return info.Env().Undefined();
    Cmd c(CmdType::RemoveListener);
    c.fd = fd;
    Push(std::move(c));
    return info.Env().Undefined();
  }

  // put(mark, flags, target, head, body): true when queued (false: over the cache budget).
  Napi::Value Put(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t mark;
    if (!MarkArg(info, 0, &mark)) return env.Undefined();
    if (!Running(env)) return Napi::Boolean::New(env, false);
    if (info.Length() < 5 || !info[1].IsNumber() || !info[2].IsString() || !info[3].IsString() || !info[4].IsBuffer()) {
      Napi::TypeError::New(env, "put(mark, flags, target, head, body: Buffer)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uint32_t flags = info[1].As<Napi::Number>().Uint32Value();
    std::string target = info[2].As<Napi::String>().Utf8Value();
    auto entry = std::make_shared<Entry>();
    entry->head = info[3].As<Napi::String>().Utf8Value();
    auto body = info[4].As<Napi::Buffer<char>>();
    entry->body.assign(body.Data(), body.Length());
    size_t size = EntryBytes(target, *entry);
    // Over the budget, the loop makes room by forgetting the marks cached longest ago; one answer
    // bigger than an eighth of it is not cached at all.
    if (size > cacheBudget_ / 8) return Napi::Boolean::New(env, false);
    Cmd c(CmdType::Put);
    c.key = KeyOf(mark, static_cast<uint8_t>(flags), target.data(), target.size());
    c.entry = std::move(entry);
    Push(std::move(c));
    return Napi::Boolean::New(env, true);
  }

  static void Marks(const Napi::Value& v, std::vector<uint32_t>* out) {
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value m = a.Get(i);
      if (m.IsNumber()) out->push_back(static_cast<uint32_t>(m.As<Napi::Number>().Int64Value()));
    }
  }

  // change(unbound, drop?): the answers of `unbound` and `drop` marks go (every answer when `drop`
  // is not an array); connections of `unbound` marks are stale from now on.
  Napi::Value Change(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Running(env)) return env.Undefined();
    Cmd c(CmdType::Change);
    if (info.Length() > 0 && info[0].IsArray()) Marks(info[0], &c.marks);
    if (info.Length() > 1 && info[1].IsArray()) Marks(info[1], &c.drop);
    else c.all = true;
    Push(std::move(c));
    return env.Undefined();
  }

  // allowToken(mark, token, expiresAt): JavaScript verified `token` for the binding of `mark`.
  Napi::Value AllowToken(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t mark;
    if (!MarkArg(info, 0, &mark)) return env.Undefined();
    if (info.Length() < 3 || !info[1].IsString() || !info[2].IsNumber()) {
      Napi::TypeError::New(env, "allowToken(mark, token, expiresAt)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!Running(env)) return env.Undefined();
    Cmd c(CmdType::AllowToken);
    c.mark = mark;
    c.key = info[1].As<Napi::String>().Utf8Value();
    c.expiresAt = info[2].As<Napi::Number>().Int64Value();
    if (c.key.empty() || c.key.size() > 256) return env.Undefined();
    Push(std::move(c));
    return env.Undefined();
  }

  // adopt(fd, mark): takes a duplicate of a JavaScript connection's fd (JavaScript then closes
  // its own); true when taken.
  Napi::Value Adopt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd;
    uint32_t mark;
    if (!FdArg(info, 0, &fd) || !MarkArg(info, 1, &mark)) return env.Undefined();
    if (!Running(env) || stopped_.load()) return Napi::Boolean::New(env, false);
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return Napi::Boolean::New(env, false);
    Cmd c(CmdType::Adopt);
    c.fd = dup;
    c.mark = mark;
    Push(std::move(c));
    return Napi::Boolean::New(env, true);
  }

  // stop(): no more accepting; idle connections are closed, ones with bytes waiting handed over.
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (thread_.joinable() && !stopped_.exchange(true)) Push(Cmd(CmdType::Stop));
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("accepted", Napi::Number::New(env, static_cast<double>(accepted_.load())));
    o.Set("answered", Napi::Number::New(env, static_cast<double>(answered_.load())));
    o.Set("handedOff", Napi::Number::New(env, static_cast<double>(handedOff_.load())));
    o.Set("adopted", Napi::Number::New(env, static_cast<double>(adopted_.load())));
    o.Set("timedOut", Napi::Number::New(env, static_cast<double>(timedOut_.load())));
    o.Set("open", Napi::Number::New(env, static_cast<double>(open_.load())));
    o.Set("entries", Napi::Number::New(env, static_cast<double>(entries_.load())));
    o.Set("cacheBytes", Napi::Number::New(env, static_cast<double>(cacheBytes_.load())));
    o.Set("evicted", Napi::Number::New(env, static_cast<double>(evicted_.load())));
    o.Set("acceptPauses", Napi::Number::New(env, static_cast<double>(acceptPauses_.load())));
    return o;
  }

  // ---- the loop's thread from here on ----

  void Loop() {
    std::vector<epoll_event> events(256);
    buf_ = new char[kReadBuf];
    bool quit = false;
    int64_t lastSweep = NowMs();
    while (!quit) {
      int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), acceptPaused_ ? 10 : sweepMs_);
      for (int i = 0; i < n && !quit; i++) {
        int fd = events[static_cast<size_t>(i)].data.fd;
        if (fd == ev_) {
          uint64_t v;
          ssize_t r = read(ev_, &v, sizeof(v));
          (void)r;
          quit = Apply();
        } else if (IsListener(fd)) {
          AcceptAll(fd);
        } else if (fd >= 0 && static_cast<size_t>(fd) < conns_.size() && conns_[static_cast<size_t>(fd)].active) {
          Serve(fd);
        }
      }
      int64_t now = NowMs();
      MaybeResumeAccepting(now);
      if (now - lastSweep >= sweepMs_) {
        lastSweep = now;
        Sweep(now);
      }
    }
    for (int l : listeners_) close(l);
    listeners_.clear();
    for (size_t fd = 0; fd < conns_.size(); fd++)
      if (conns_[fd].active) Drop(static_cast<int>(fd));
    delete[] buf_;
    buf_ = nullptr;
  }

  bool IsListener(int fd) const { return fd >= 0 && static_cast<size_t>(fd) < isListener_.size() && isListener_[static_cast<size_t>(fd)] != 0; }

  void MarkListener(int fd, bool on) {
    if (isListener_.size() <= static_cast<size_t>(fd)) isListener_.resize(static_cast<size_t>(fd) + 64, 0);
    isListener_[static_cast<size_t>(fd)] = on ? 1 : 0;
  }

  // Applies queued commands; true on Quit.
  bool Apply() {
    std::deque<Cmd> cmds;
    {
      std::lock_guard<std::mutex> g(mu_);
      cmds.swap(cmds_);
    }
    for (Cmd& c : cmds) {
      switch (c.type) {
        case CmdType::AddListener: {
          if (stopping_) {
            close(c.fd);
            break;
          }
          if (acceptPaused_ || EpollAdd(c.fd, EPOLLIN)) {  // paused: added on resume
            listeners_.push_back(c.fd);
            MarkListener(c.fd, true);
          } else {
            close(c.fd);
          }
          break;
        }
        case CmdType::RemoveListener:
          for (size_t i = 0; i < listeners_.size(); i++) {
            if (listeners_[i] == c.fd) {
              epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
              MarkListener(c.fd, false);
              close(c.fd);
              listeners_.erase(listeners_.begin() + static_cast<long>(i));
              break;
            }
          }
          break;
        case CmdType::Put: {
          // Commands apply in the order JavaScript made them: a put made before a change is
          // emptied by it, one made after reflects the registry after it.
          size_t size = EntryBytes(c.key, *c.entry);
          uint32_t mark = MarkOfKey(c.key);
          while (cacheBytes_.load() + size > cacheBudget_ && !markOrder_.empty()) {
            uint32_t oldest = markOrder_.front();
            markOrder_.pop_front();
            if (oldest == mark) continue;  // not the one being filled (it goes back at the end)
            if (keysByMark_.count(oldest) != 0) evicted_++;
            DropMark(oldest);
          }
          if (cacheBytes_.load() + size > cacheBudget_) break;
          if (keysByMark_.count(mark) == 0) {
            markOrder_.push_back(mark);
            // Marks dropped by changes linger in the order; sweep them out now and then.
            if (markOrder_.size() > 2 * keysByMark_.size() + 1024) {
              std::deque<uint32_t> live;
              for (uint32_t m : markOrder_)
                if (keysByMark_.count(m) != 0 || m == mark) live.push_back(m);
              markOrder_.swap(live);
            }
          }
          auto it = cache_.find(c.key);
          if (it != cache_.end()) {
            cacheBytes_ -= EntryBytes(it->first, *it->second);
            it->second = std::move(c.entry);
          } else {
            keysByMark_[mark].push_back(c.key);
            cache_.emplace(std::move(c.key), std::move(c.entry));
          }
          cacheBytes_ += size;
          entries_ = cache_.size();
          break;
        }
        case CmdType::Change:
          if (c.all) {
            cache_.clear();
            keysByMark_.clear();
            markOrder_.clear();
            tokens_.clear();
            cacheBytes_ = 0;
          } else {
            for (uint32_t m : c.marks) DropMark(m);
            for (uint32_t m : c.drop) DropMark(m);
            for (uint32_t m : c.marks) tokens_.erase(m);
            for (uint32_t m : c.drop) tokens_.erase(m);
          }
          entries_ = cache_.size();
          for (uint32_t m : c.marks)
            for (Conn& k : conns_)
              if (k.active && k.mark == m) k.stale = true;
          break;
        case CmdType::AllowToken: {
          auto& list = tokens_[c.mark];
          int64_t now = WallMs();
          // Expired ones go; at most kTokensPerMark kept (the oldest goes first).
          for (size_t i = list.size(); i-- > 0;)
            if (list[i].second <= now || list[i].first == c.key) list.erase(list.begin() + static_cast<long>(i));
          if (c.expiresAt > now) list.emplace_back(std::move(c.key), c.expiresAt);
          while (list.size() > kTokensPerMark) list.erase(list.begin());
          if (list.empty()) tokens_.erase(c.mark);
          break;
        }
        case CmdType::Adopt:
          if (stopping_) {
            close(c.fd);
            break;
          }
          adopted_++;
          Track(c.fd, c.mark, true);
          break;
        case CmdType::Stop:
          stopping_ = true;
          for (int l : listeners_) {
            epoll_ctl(ep_, EPOLL_CTL_DEL, l, nullptr);
            MarkListener(l, false);
            close(l);
          }
          listeners_.clear();
          for (size_t fd = 0; fd < conns_.size(); fd++) {
            if (!conns_[fd].active) continue;
            char b;
            ssize_t r = recv(static_cast<int>(fd), &b, 1, MSG_PEEK | MSG_DONTWAIT);
            if (r > 0) Handoff_(static_cast<int>(fd), std::string(), std::string());  // JavaScript reads them
            else Drop(static_cast<int>(fd));
          }
          break;
        case CmdType::Quit:
          return true;
      }
    }
    return false;
  }

  // Starts tracking a connection; an adopted one is watched at once, an accepted one only once a
  // first read finds nothing (most have their request waiting by the time they are accepted).
  static int64_t WallMs() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  }

  bool TokenValid(uint32_t mark, const char* token, size_t len) {
    auto it = tokens_.find(mark);
    if (it == tokens_.end()) return false;
    int64_t now = WallMs();
    for (const auto& t : it->second)
      if (t.first.size() == len && std::memcmp(t.first.data(), token, len) == 0) return now < t.second;
    return false;
  }

  static uint32_t MarkOfKey(const std::string& k) {
    return (static_cast<uint32_t>(static_cast<uint8_t>(k[0])) << 24) | (static_cast<uint32_t>(static_cast<uint8_t>(k[1])) << 16) |
           (static_cast<uint32_t>(static_cast<uint8_t>(k[2])) << 8) | static_cast<uint32_t>(static_cast<uint8_t>(k[3]));
  }

  // Forgets every answer of one mark.
  void DropMark(uint32_t m) {
    auto idx = keysByMark_.find(m);
    if (idx == keysByMark_.end()) return;
    for (const std::string& k : idx->second) {
      auto it = cache_.find(k);
      if (it == cache_.end()) continue;
      cacheBytes_ -= EntryBytes(it->first, *it->second);
      cache_.erase(it);
    }
    keysByMark_.erase(idx);
  }

  bool Track(int fd, uint32_t mark, bool adopted) {
    if (conns_.size() <= static_cast<size_t>(fd)) conns_.resize(static_cast<size_t>(fd) + 64);
    Conn& k = conns_[static_cast<size_t>(fd)];
    k.active = true;
    k.stale = false;
    k.served = adopted;
    k.registered = false;
    k.adopted = adopted;
    k.mark = mark;
    k.at = NowMs();
    open_++;
    return !adopted || Watch(fd);
  }

  // Puts the connection into the epoll set; false (and closed) when it cannot be.
  bool Watch(int fd) {
    Conn& k = conns_[static_cast<size_t>(fd)];
    if (k.registered) return true;
    if (!EpollAdd(fd, EPOLLIN | EPOLLRDHUP)) {
      Drop(fd);
      return false;
    }
    k.registered = true;
    return true;
  }

  // Stops tracking. The epoll entry goes with the last fd of the socket: closing ours removes it,
  // unless the socket lives on elsewhere (handed over; adopted: JavaScript's fd may still be open).
  void Untrack(int fd, bool closing) {
    Conn& k = conns_[static_cast<size_t>(fd)];
    if (!k.active) return;
    k.active = false;
    open_--;
    if (k.registered && (!closing || k.adopted)) epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
    k.registered = false;
  }

  void Drop(int fd) {
    Untrack(fd, true);
    close(fd);
  }

  void AcceptAll(int lfd) {
    for (int i = 0; i < kAcceptBatch; i++) {
      int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        // Out of descriptors or memory: the listener stays readable, so pause rather than spin.
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) PauseAccepting(NowMs() + kPauseOnErrorMs);
        return;  // EAGAIN, or a connection that died in the queue
      }
      accepted_++;
      uint32_t mark = 0;
      socklen_t len = sizeof(mark);
      if (getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &len) != 0) mark = 0;
      Track(fd, mark, false);
      Serve(fd);
      if (acceptPaused_) return;  // too many handoffs waiting (Handoff_)
    }
  }

  // Stops watching the listeners (the kernel keeps queueing up to the backlog, then drops SYNs).
  void PauseAccepting(int64_t until) {
    if (acceptPaused_) return;
    acceptPaused_ = true;
    pauseUntil_ = until;
    acceptPauses_++;
    for (int l : listeners_) epoll_ctl(ep_, EPOLL_CTL_DEL, l, nullptr);
  }

  void MaybeResumeAccepting(int64_t now) {
    if (!acceptPaused_ || now < pauseUntil_ || inflight_->load() > kMaxInflight / 2) return;
    acceptPaused_ = false;
    for (int l : listeners_) EpollAdd(l, EPOLLIN);
  }

  // Reads what the connection sent and answers it, or hands it over.
  void Serve(int fd) {
    Conn& k = conns_[static_cast<size_t>(fd)];
    char* buf = buf_;
    ssize_t n = recv(fd, buf, kReadBuf, MSG_DONTWAIT);
    if (n == 0) {
      Drop(fd);
      return;
    }
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) Drop(fd);
      else Watch(fd);
      return;
    }
    k.at = NowMs();
    size_t len = static_cast<size_t>(n);
    size_t off = 0;
    std::string key;
    while (off < len) {
      Parsed req;
      // A session token must be one JavaScript verified for this mark and not yet expired; then
      // the request is answered as one without it (JavaScript caches nothing a token changes).
      if (k.stale || ParseRequest(buf + off, len - off, maxHeader_, &req) != 1 ||
          (req.token != nullptr && !TokenValid(k.mark, req.token, req.tokenLen))) {
        Handoff_(fd, std::string(), std::string(buf + off, len - off));
        return;
      }
      key = KeyOf(k.mark, req.flags, req.target, req.targetLen);
      auto it = cache_.find(key);
      if (it == cache_.end()) {
        Handoff_(fd, std::string(), std::string(buf + off, len - off));
        return;
      }
      off += req.length;
      const Entry& e = *it->second;
      const std::string& suffix = req.close ? closeSuffix_ : keepAliveSuffix_;
      const std::string& date = DateLine();
      iovec iov[4] = {{const_cast<char*>(e.head.data()), e.head.size()},
                      {const_cast<char*>(date.data()), date.size()},
                      {const_cast<char*>(suffix.data()), suffix.size()},
                      {const_cast<char*>(e.body.data()), e.body.size()}};
      size_t total = e.head.size() + date.size() + suffix.size() + e.body.size();
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = 4;
      // On the last answer before closing, MSG_MORE lets the kernel send the FIN with the data.
      ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT | (req.close ? MSG_MORE : 0));
      answered_++;
      k.served = true;
      if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        Drop(fd);
        return;
      }
      size_t written = w < 0 ? 0 : static_cast<size_t>(w);
      if (written < total) {
        // The socket's buffer is full: JavaScript writes the rest (and the close, if asked).
        std::string out;
        out.reserve(total - written);
        for (const iovec& v : iov) {
          if (written >= v.iov_len) {
            written -= v.iov_len;
            continue;
          }
          out.append(static_cast<const char*>(v.iov_base) + written, v.iov_len - written);
          written = 0;
        }
        Handoff_(fd, std::move(out), req.close ? std::string() : std::string(buf + off, len - off), req.close);
        return;
      }
      if (req.close) {
        Drop(fd);
        return;
      }
    }
    Watch(fd);  // kept alive: wait for its next request
  }

  void Sweep(int64_t now) {
    for (size_t i = 0; i < conns_.size(); i++) {
      Conn& k = conns_[i];
      if (!k.active) continue;
      int fd = static_cast<int>(i);
      if (!k.served && headerTimeoutMs_ > 0 && now - k.at >= headerTimeoutMs_) {
        timedOut_++;
        ssize_t w = send(fd, timeoutResponse_.data(), timeoutResponse_.size(), MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE);
        (void)w;
        Drop(fd);
      } else if (k.served && keepAliveTimeoutMs_ > 0 && now - k.at >= keepAliveTimeoutMs_) {
        Drop(fd);
      }
    }
  }

  // Gives the connection to JavaScript: `out` first to write, `rest` its first bytes to read.
  void Handoff_(int fd, std::string out, std::string rest, bool closeAfter = false) {
    Conn& k = conns_[static_cast<size_t>(fd)];
    auto* h = new Handoff{fd, k.mark, (k.stale ? kStale : 0) | (closeAfter ? kCloseAfter : 0), std::move(out), std::move(rest), inflight_};
    Untrack(fd, false);
    handedOff_++;
    if (++(*inflight_) >= kMaxInflight) PauseAccepting(0);
    napi_status s = tsfn_.NonBlockingCall(h, [](Napi::Env env, Napi::Function cb, Handoff* h) {
      (*h->inflight)--;
      if (env == nullptr || cb.IsEmpty()) {
        close(h->fd);
        delete h;
        return;
      }
      Napi::Value out = h->out.empty() ? env.Undefined() : Napi::Buffer<char>::Copy(env, h->out.data(), h->out.size());
      Napi::Value rest = h->rest.empty() ? env.Undefined() : Napi::Buffer<char>::Copy(env, h->rest.data(), h->rest.size());
      cb.Call({Napi::Number::New(env, h->fd), Napi::Number::New(env, static_cast<double>(h->mark)),
               Napi::Number::New(env, h->state), out, rest});
      delete h;
    });
    if (s != napi_ok) {
      (*inflight_)--;
      close(fd);
      delete h;
    }
  }

  const std::string& DateLine() {
    time_t now = time(nullptr);
    if (now != dateSecond_) {
      dateSecond_ = now;
      tm t{};
      gmtime_r(&now, &t);
      char b[64];
      size_t n = strftime(b, sizeof(b), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &t);
      date_.assign(b, n);
    }
    return date_;
  }

  // Configuration (set before the thread starts, read-only after).
  size_t maxHeader_ = 16384;
  int64_t headerTimeoutMs_ = 10000;
  int64_t keepAliveTimeoutMs_ = 5000;
  size_t cacheBudget_ = 0;
  int sweepMs_ = 250;
  std::string keepAliveSuffix_;
  std::string closeSuffix_;
  std::string timeoutResponse_;

  int ep_ = -1;
  int ev_ = -1;
  std::thread thread_;
  Napi::ThreadSafeFunction tsfn_;
  bool tsfnLive_ = true;
  bool cleanupHook_ = false;
  napi_env env_ = nullptr;
  std::mutex mu_;
  std::deque<Cmd> cmds_;
  std::atomic<bool> stopped_{false};

  // The loop's own state.
  char* buf_ = nullptr;
  std::unordered_map<std::string, std::shared_ptr<Entry>> cache_;
  std::unordered_map<uint32_t, std::vector<std::string>> keysByMark_;
  std::deque<uint32_t> markOrder_;  // marks in the order their first answer was cached
  // Session tokens JavaScript verified, per mark, with their expiry (ms since the epoch).
  std::unordered_map<uint32_t, std::vector<std::pair<std::string, int64_t>>> tokens_;
  static constexpr size_t kTokensPerMark = 16;
  std::vector<Conn> conns_;
  std::vector<int> listeners_;
  std::vector<uint8_t> isListener_;  // by fd
  bool stopping_ = false;
  time_t dateSecond_ = 0;
  std::string date_;

  std::atomic<uint64_t> accepted_{0}, answered_{0}, handedOff_{0}, adopted_{0}, timedOut_{0}, evicted_{0}, acceptPauses_{0};
  std::shared_ptr<std::atomic<int64_t>> inflight_ = std::make_shared<std::atomic<int64_t>>(0);
  bool acceptPaused_ = false;
  int64_t pauseUntil_ = 0;
  std::atomic<int64_t> open_{0};
  std::atomic<size_t> entries_{0};
  std::atomic<size_t> cacheBytes_{0};
};

Napi::Function DefineFastPath(Napi::Env env) { return FastPath::Define(env); }

// parseFastPath(buffer, maxHeaderBytes): what the loop makes of a request (for tests: it must
// agree with src/pipeline/fastpath.ts), or undefined when it would hand it to JavaScript.
Napi::Value ParseFastPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "parseFastPath(buffer, maxHeaderBytes)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto b = info[0].As<Napi::Buffer<char>>();
  Parsed p;
  if (ParseRequest(b.Data(), b.Length(), static_cast<size_t>(info[1].As<Napi::Number>().Int64Value()), &p) != 1)
    return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("length", Napi::Number::New(env, static_cast<double>(p.length)));
  o.Set("target", Napi::String::New(env, p.target, p.targetLen));
  o.Set("flags", Napi::Number::New(env, p.flags));
  o.Set("close", Napi::Boolean::New(env, p.close));
  if (p.token != nullptr) o.Set("token", Napi::String::New(env, p.token, p.tokenLen));
  return o;
}

}  // namespace linkgate
