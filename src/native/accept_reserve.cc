// Whether libuv has lost the spare fd it keeps for running out of fds (loop->emfile_fd), for
// src/listener/accept-pause.ts. When it cannot open the spare again (the process is over its fd limit), an
// accept() that fails with EMFILE is retried on every turn of the event loop for as long as a connection waits,
// and no error reaches JavaScript: the process burns a CPU and nothing says why. No API exposes the field.
#include <node.h>
#include <uv.h>

namespace {

void AcceptReserveLost(const v8::FunctionCallbackInfo<v8::Value>& args) {
  uv_loop_t* loop = node::GetCurrentEventLoop(args.GetIsolate());
#if defined(__unix__) || defined(__APPLE__)
  args.GetReturnValue().Set(loop != nullptr && loop->emfile_fd == -1);
#else
  args.GetReturnValue().Set(false);
#endif
}

}  // namespace

void InitAcceptReserve(v8::Local<v8::Object> exports) {
  NODE_SET_METHOD(exports, "acceptReserveLost", AcceptReserveLost);
}
