// Hands memory the proxy no longer uses back to the kernel, for src/process/idle-memory.ts.
// Neither V8 nor glibc does this promptly on its own: V8 shrinks its heap only after ~10 s of quiet, and glibc
// trims only the top of its heap, which socket buffers still in use keep pinned long after a traffic burst.
#include <node.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

// Starts an incremental, memory-reducing GC (V8's "moderate pressure"): marking runs in small steps and on
// helper threads, so unlike LowMemoryNotification (a 30-100 ms full pause here) nothing waits long for it.
// Dead Buffers' backing stores, which live in malloc's heap, are freed when it completes.
void StartGarbageCollection(const v8::FunctionCallbackInfo<v8::Value>& args) {
  args.GetIsolate()->MemoryPressureNotification(v8::MemoryPressureLevel::kModerate);
}

// Returns every whole free page of every malloc arena to the kernel, not only the heap's top: 1-5 ms here.
void TrimMalloc(const v8::FunctionCallbackInfo<v8::Value>& args) {
#if defined(__GLIBC__)
  args.GetReturnValue().Set(malloc_trim(0) != 0);
#else
  args.GetReturnValue().Set(false);
#endif
}

}  // namespace

// original_dst.cc
void InitOriginalDst(v8::Local<v8::Object> exports);

NODE_MODULE_INIT(/* exports, module, context */) {
  NODE_SET_METHOD(exports, "startGarbageCollection", StartGarbageCollection);
  NODE_SET_METHOD(exports, "trimMalloc", TrimMalloc);
  InitOriginalDst(exports);
}
