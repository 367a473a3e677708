// linkgate_native: the few socket options Node does not expose.
//   getMark(fd)        getsockopt(SOL_SOCKET, SO_MARK)  -> uint32
//   setIpTtl(fd, ttl)  setsockopt(IPPROTO_IP, IP_TTL), ttl in 1..255
//   getIpTtl(fd)       getsockopt(IPPROTO_IP, IP_TTL)
//   (on an IPv6 socket both use IPPROTO_IPV6 / IPV6_UNICAST_HOPS, where -1 means the route's default)
//   listenTcp(address, port, ifname, backlog)
//                      socket + SO_REUSEADDR + SO_REUSEPORT (+ SO_BINDTODEVICE when ifname is
//                      not empty) + bind + listen; returns the non-blocking fd for Node's
//                      server.listen({ fd }). Node 20 can set neither SO_REUSEPORT nor
//                      SO_BINDTODEVICE, and per-port listeners need both.
// Failures throw an Error with .code (errno name, e.g. 'EBADF'), .errno and .syscall.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace linkgate {
Napi::Function DefineFastPath(Napi::Env env);
Napi::Value ParseFastPath(const Napi::CallbackInfo& info);
}  // namespace linkgate

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
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENODEV: return "ENODEV";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
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

int Domain(int fd) {
  int domain = AF_INET;
  socklen_t len = sizeof(domain);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return -1;
  return domain;
}

Napi::Value SetIpTtl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  long fd, ttl;
  if (!IntArg(info, 0, "fd", 0, kMaxFd, &fd)) return env.Undefined();
  if (!IntArg(info, 1, "ttl", -1, 255, &ttl)) return env.Undefined();
  int domain = Domain(static_cast<int>(fd));
  if (domain < 0) {
    ThrowErrno(env, errno, "getsockopt", "SO_DOMAIN");
    return env.Undefined();
  }
  if (ttl == 0 || (ttl == -1 && domain != AF_INET6)) {
    Napi::RangeError e = Napi::RangeError::New(env, "ttl must be an integer in 1..255 (-1 on IPv6: the route's default)");
    e.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int v = static_cast<int>(ttl);
  bool v6 = domain == AF_INET6;
  if (setsockopt(static_cast<int>(fd), v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_UNICAST_HOPS : IP_TTL, &v, sizeof(v)) != 0) {
    ThrowErrno(env, errno, "setsockopt", v6 ? "IPV6_UNICAST_HOPS" : "IP_TTL");
  }
  return env.Undefined();
}

Napi::Value GetIpTtl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  long fd;
  if (!IntArg(info, 0, "fd", 0, kMaxFd, &fd)) return env.Undefined();
  int domain = Domain(static_cast<int>(fd));
  if (domain < 0) {
    ThrowErrno(env, errno, "getsockopt", "SO_DOMAIN");
    return env.Undefined();
  }
  bool v6 = domain == AF_INET6;
  int v = 0;
  socklen_t len = sizeof(v);
  if (getsockopt(static_cast<int>(fd), v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_UNICAST_HOPS : IP_TTL, &v, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt", v6 ? "IPV6_UNICAST_HOPS" : "IP_TTL");
    return env.Undefined();
  }
  return Napi::Number::New(env, v);
}

Napi::Value ListenTcp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[2].IsString()) {
    Napi::TypeError e = Napi::TypeError::New(env, "listenTcp(address: string, port: number, ifname: string, backlog: number)");
    e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string address = info[0].As<Napi::String>().Utf8Value();
  std::string ifname = info[2].As<Napi::String>().Utf8Value();
  long port, backlog;
  if (!IntArg(info, 1, "port", 1, 65535, &port)) return env.Undefined();
  if (!IntArg(info, 3, "backlog", 1, 65535, &backlog)) return env.Undefined();
  if (ifname.size() >= IFNAMSIZ) {
    Napi::RangeError e = Napi::RangeError::New(env, "ifname must be shorter than 16 bytes");
    e.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  sockaddr_storage ss{};
  socklen_t sslen;
  int family;
  auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, address.c_str(), &s4->sin_addr) == 1) {
    family = AF_INET;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(static_cast<uint16_t>(port));
    sslen = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, address.c_str(), &s6->sin6_addr) == 1) {
    family = AF_INET6;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(static_cast<uint16_t>(port));
    sslen = sizeof(sockaddr_in6);
  } else {
    Napi::TypeError e = Napi::TypeError::New(env, "address must be an IPv4 or IPv6 address");
    e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket", address.c_str());
    return env.Undefined();
  }
  int one = 1;
  const char* step = nullptr;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) step = "SO_REUSEADDR";
  else if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) step = "SO_REUSEPORT";
  else if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) step = "IPV6_V6ONLY";
  else if (!ifname.empty() && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname.c_str(), static_cast<socklen_t>(ifname.size())) != 0) step = "SO_BINDTODEVICE";
  if (step != nullptr) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "setsockopt", step);
    return env.Undefined();
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), sslen) != 0) step = "bind";
  else if (listen(fd, static_cast<int>(backlog)) != 0) step = "listen";
  if (step != nullptr) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, step, address.c_str());
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("getMark", Napi::Function::New(env, GetMark, "getMark"));
  exports.Set("setIpTtl", Napi::Function::New(env, SetIpTtl, "setIpTtl"));
  exports.Set("getIpTtl", Napi::Function::New(env, GetIpTtl, "getIpTtl"));
  exports.Set("listenTcp", Napi::Function::New(env, ListenTcp, "listenTcp"));
  exports.Set("FastPath", linkgate::DefineFastPath(env));
  exports.Set("parseFastPath", Napi::Function::New(env, linkgate::ParseFastPath, "parseFastPath"));
  return exports;
}

}  // namespace

NODE_API_MODULE(linkgate_native, Init)
