// linkgate_native: the few socket options Node does not expose.
//   getMark(fd)        getsockopt(SOL_SOCKET, SO_MARK)  -> uint32
//   setIpTtl(fd, ttl)  setsockopt(IPPROTO_IP, IP_TTL), ttl in 1..255
//   getIpTtl(fd)       getsockopt(IPPROTO_IP, IP_TTL)
// Failures throw an Error with .code (errno name, e.g. 'EBADF'), .errno and .syscall.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <netinet/in.h>
#include <sys/socket.h>

namespace {

const char* ErrnoName(int err) {
  switch (err) {
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOMEM: return "ENOMEM";
    default: return nullptr;
  }
}

void ThrowErrno(Napi::Env env, int err, const char* syscall, const char* what) {
  const char* name = ErrnoName(err);
  std::string code = name != nullptr ? name : ("E" + std::to_string(err));
  std::string msg = std::string(syscall) + " " + what + ": " + code + " (" + std::strerror(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
}

// Reads an integer argument; throws TypeError/RangeError (code ERR_INVALID_ARG_*) on failure.
bool IntArg(const Napi::CallbackInfo& info, size_t i, const char* name, long lo, long hi, long* out) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) {
    Napi::TypeError e = Napi::TypeError::New(env, std::string(name) + " must be a number");
    e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
    e.ThrowAsJavaScriptException();
    return false;
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != static_cast<double>(static_cast<long>(d))) {
    Napi::RangeError e = Napi::RangeError::New(
        env, std::string(name) + " must be an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
    e.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
    e.ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<long>(d);
  return true;
}

constexpr long kMaxFd = 0x7fffffff;

Napi::Value GetMark(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  long fd;
  if (!IntArg(info, 0, "fd", 0, kMaxFd, &fd)) return env.Undefined();
  unsigned int mark = 0;
  socklen_t len = sizeof(mark);
  if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_MARK, &mark, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt", "SO_MARK");
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(mark));
}

Napi::Value SetIpTtl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  long fd, ttl;
  if (!IntArg(info, 0, "fd", 0, kMaxFd, &fd)) return env.Undefined();
  if (!IntArg(info, 1, "ttl", 1, 255, &ttl)) return env.Undefined();
  int v = static_cast<int>(ttl);
  if (setsockopt(static_cast<int>(fd), IPPROTO_IP, IP_TTL, &v, sizeof(v)) != 0) {
    ThrowErrno(env, errno, "setsockopt", "IP_TTL");
  }
  return env.Undefined();
}

Napi::Value GetIpTtl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  long fd;
  if (!IntArg(info, 0, "fd", 0, kMaxFd, &fd)) return env.Undefined();
  int v = 0;
  socklen_t len = sizeof(v);
  if (getsockopt(static_cast<int>(fd), IPPROTO_IP, IP_TTL, &v, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt", "IP_TTL");
    return env.Undefined();
  }
  return Napi::Number::New(env, v);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("getMark", Napi::Function::New(env, GetMark, "getMark"));
  exports.Set("setIpTtl", Napi::Function::New(env, SetIpTtl, "setIpTtl"));
  exports.Set("getIpTtl", Napi::Function::New(env, GetIpTtl, "getIpTtl"));
  return exports;
}

}  // namespace

NODE_API_MODULE(linkgate_native, Init)
