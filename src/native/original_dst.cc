// The address a connection was sent to before iptables REDIRECT rewrote it to one of our listeners, for
// src/listener/original-dst.ts: getsockopt(SO_ORIGINAL_DST) (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6), which read it
// from the connection's conntrack entry. Node has no API for either, and no maintained npm package does it.
#include <node.h>
#include <errno.h>
#include <string.h>
#if defined(__linux__)
#include <arpa/inet.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

namespace {

// originalDst(fd) -> [address, port] or the errno (a number): ENOENT when the connection has no NAT entry
// (conntrack not loaded, or not redirected and never tracked), ENOTSOCK/EBADF for a bad fd. No exceptions: it runs
// once per accepted connection.
void OriginalDst(const v8::FunctionCallbackInfo<v8::Value>& args) {
  v8::Isolate* isolate = args.GetIsolate();
  v8::Local<v8::Context> context = isolate->GetCurrentContext();
  if (args.Length() < 1 || !args[0]->IsInt32()) {
    args.GetReturnValue().Set(v8::Integer::New(isolate, EINVAL));
    return;
  }
#if defined(__linux__)
  int fd = args[0].As<v8::Int32>()->Value();
  struct sockaddr_storage local;
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&local), &len) != 0) {
    args.GetReturnValue().Set(v8::Integer::New(isolate, errno));
    return;
  }
  // A v4 connection on a dual-stack (::) listener has an IPv4 conntrack entry: ask the IPv4 level.
  bool v4 = local.ss_family == AF_INET;
  if (local.ss_family == AF_INET6) {
    const struct in6_addr* a = &reinterpret_cast<struct sockaddr_in6*>(&local)->sin6_addr;
    v4 = IN6_IS_ADDR_V4MAPPED(a);
  }
  char text[INET6_ADDRSTRLEN];
  int port;
  if (v4) {
    struct sockaddr_in dst;
    socklen_t dlen = sizeof(dst);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &dlen) != 0) {
      args.GetReturnValue().Set(v8::Integer::New(isolate, errno));
      return;
    }
    inet_ntop(AF_INET, &dst.sin_addr, text, sizeof(text));
    port = ntohs(dst.sin_port);
  } else {
    struct sockaddr_in6 dst;
    socklen_t dlen = sizeof(dst);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &dlen) != 0) {
      args.GetReturnValue().Set(v8::Integer::New(isolate, errno));
      return;
    }
    inet_ntop(AF_INET6, &dst.sin6_addr, text, sizeof(text));
    port = ntohs(dst.sin6_port);
  }
  v8::Local<v8::Array> result = v8::Array::New(isolate, 2);
  result->Set(context, 0, v8::String::NewFromUtf8(isolate, text).ToLocalChecked()).Check();
  result->Set(context, 1, v8::Integer::New(isolate, port)).Check();
  args.GetReturnValue().Set(result);
#else
  args.GetReturnValue().Set(v8::Integer::New(isolate, ENOSYS));
#endif
}

}  // namespace

void InitOriginalDst(v8::Local<v8::Object> exports) {
  NODE_SET_METHOD(exports, "originalDst", OriginalDst);
}
