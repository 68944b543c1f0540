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
// mappings of /proc/self/exe with no copy-on-write page in them, resident (Anonymous) or swapped out (Swap: relro
// pages relocated at load are COW copies, and under memory pressure all of them may be in swap), so each page is an
// unmodified copy of the file and comes back from the page cache on its next use (a minor fault). Startup touches
// most of the ~100 MB Node binary, and the kernel maps 64 KiB around each page touched; serving uses a few MiB of
// it. These pages are page cache shared with every Node process on the host, but each process's RSS counts all it
// maps. Returns the bytes of address space released.
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
    // The mapping's header matched; both fields must then read 0 kB before the next header (or the end) releases it.
    bool candidate = false;
    bool anonymousZero = false, swapZero = false;
    bool continuation = false;  // this read is the rest of a line longer than the buffer: not a field of ours
    for (;;) {
      const bool more = fgets(line, sizeof(line), smaps) != nullptr;
      const bool partial = continuation;
      continuation = more && strchr(line, '\n') == nullptr && !feof(smaps);
      if (partial) continue;
      unsigned long s = 0, e = 0;
      char perms[8];
      int pathAt = 0;
      const bool header = more && sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &s, &e, perms, &pathAt) == 3 && pathAt > 0;
      if (!more || header) {
        if (candidate && anonymousZero && swapZero &&
            madvise(reinterpret_cast<void*>(start), end - start, MADV_DONTNEED) == 0) {
          released += static_cast<double>(end - start);
        }
        if (!more) break;
        char* path = line + pathAt;
        path[strcspn(path, "\n")] = 0;
        // A header cut short (continuation) is not trusted: its path may be the start of a longer one.
        candidate = !continuation && perms[1] != 'w' && strcmp(path, exe) == 0;
        anonymousZero = swapZero = false;
        start = s;
        end = e;
        continue;
      }
      if (!candidate) continue;
      unsigned long kb;
      if (sscanf(line, "Anonymous: %lu kB", &kb) == 1) {
        anonymousZero = kb == 0;
        candidate = anonymousZero;
      } else if (sscanf(line, "Swap: %lu kB", &kb) == 1) {
        swapZero = kb == 0;
        candidate = swapZero;
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
// accept_reserve.cc
void InitAcceptReserve(v8::Local<v8::Object> exports);

NODE_MODULE_INIT(/* exports, module, context */) {
  NODE_SET_METHOD(exports, "startGarbageCollection", StartGarbageCollection);
  NODE_SET_METHOD(exports, "trimMalloc", TrimMalloc);
  NODE_SET_METHOD(exports, "releaseProgramPages", ReleaseProgramPages);
  InitOriginalDst(exports);
  InitAcceptReserve(exports);
}
