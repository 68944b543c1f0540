// Hands memory the proxy no longer uses back to the kernel, for src/process/idle-memory.ts.
// Neither V8 nor glibc does this promptly on its own: V8 shrinks its heap only after ~10 s of quiet, and glibc
// trims only the top of its heap, which socket buffers still in use keep pinned long after a traffic burst.
#include <node.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#include <climits>
#include <cstdio>
#include <cstring>
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

// Drops this process's page-table entries for the pages of its own executable that nothing wrote to: read-only
// mappings of /proc/self/exe with no anonymous (copy-on-write) page in them, so each page is an unmodified copy
// of the file and comes back from the page cache on its next use (a minor fault). Startup touches most of the
// ~100 MB Node binary, and the kernel maps 64 KiB around each page touched; serving uses a few MiB of it. These
// pages are page cache shared with every Node process on the host, but each process's RSS counts all it maps.
// Returns the bytes of address space released.
void ReleaseProgramPages(const v8::FunctionCallbackInfo<v8::Value>& args) {
  double released = 0;
#if defined(__linux__)
  char exe[PATH_MAX];
  const ssize_t exeLength = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  FILE* smaps = exeLength > 0 ? fopen("/proc/self/smaps", "re") : nullptr;
  if (smaps != nullptr) {
    exe[exeLength] = 0;
    char line[PATH_MAX + 128];
    unsigned long start = 0, end = 0;
    bool candidate = false;
    while (fgets(line, sizeof(line), smaps) != nullptr) {
      unsigned long s, e;
      char perms[8];
      int pathAt = 0;
      if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &s, &e, perms, &pathAt) == 3 && pathAt > 0) {
        char* path = line + pathAt;
        path[strcspn(path, "\n")] = 0;
        candidate = perms[1] != 'w' && strcmp(path, exe) == 0;
        start = s;
        end = e;
        continue;
      }
      unsigned long anonymousKb;
      if (candidate && sscanf(line, "Anonymous: %lu kB", &anonymousKb) == 1) {
        candidate = false;
        if (anonymousKb != 0) continue;
        if (madvise(reinterpret_cast<void*>(start), end - start, MADV_DONTNEED) == 0) released += static_cast<double>(end - start);
      }
    }
    fclose(smaps);
  }
#endif
  args.GetReturnValue().Set(released);
}

}  // namespace

// original_dst.cc
void InitOriginalDst(v8::Local<v8::Object> exports);

NODE_MODULE_INIT(/* exports, module, context */) {
  NODE_SET_METHOD(exports, "startGarbageCollection", StartGarbageCollection);
  NODE_SET_METHOD(exports, "trimMalloc", TrimMalloc);
  NODE_SET_METHOD(exports, "releaseProgramPages", ReleaseProgramPages);
  InitOriginalDst(exports);
}
