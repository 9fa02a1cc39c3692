// Error reporting for the C ABI declared in api.h.
#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdio>

#include "api.h"

namespace {
// One message per host thread: concurrent callers never read each other's errors.
thread_local char g_last_error[512] = "";
}  // namespace

namespace attnbench {

int set_error(int code, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vsnprintf(g_last_error, sizeof(g_last_error), fmt, args);
  va_end(args);
  return code;
}

int check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    return set_error(ATTNBENCH_ECUDA, "%s: %s (%s)", what, cudaGetErrorString(err), cudaGetErrorName(err));
  }
  g_last_error[0] = '\0';
  return ATTNBENCH_OK;
}

}  // namespace attnbench

// 2: window, softcap and alibi_slopes arguments; 3: the tensor-core paged decode; 4: the paged decode's
// kv_dtype and fp8 scales (mirrored by ABI_VERSION in attnbench/cuda_build.py).
extern "C" int attnbench_abi_version(void) { return 4; }

extern "C" const char* attnbench_last_error(void) { return g_last_error; }
