// Per-kernel GPU time of a whole process, from CUPTI's activity API.
//
// The CUDA driver loads this library into any program when
// CUDA_INJECTION64_PATH names it, and calls InitializeInjection, so frugal
// runs unchanged under it (the way Nsight Systems attaches). Kernels,
// memcpys and memsets are recorded with their GPU start and end times; at
// exit the totals go to $KERNEL_TRACE_OUT (default kernel-trace.csv), one line
// per kernel name or copy kind: kind,count,total_ns,bytes,name.
//
// Build: scripts/build-cuda.sh (-> target/cuda/libkernel_trace.so, against
// the pinned CUPTI 13.0 wheel's headers; at run time libcupti.so.13 comes from
// the same pip package, which the PyTorch venv on the GPU machines has).
// Used by bench/gpu-profile.sh, which runs a training bench twice and takes
// the difference, so initialisation and warm-up cancel out.
#include <cupti.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUFFER_BYTES (8u << 20)
#define SLOTS 8192 // distinct (kind, name) pairs; a training step has a few hundred

typedef struct {
  const char *kind; // static string
  char *name;       // owned copy (CUPTI's strings die with their buffer)
  uint64_t count, total_ns, bytes;
} Slot;

static Slot slots[SLOTS];
static uint64_t overflow, dropped;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t fnv1a(const char *a, const char *b) {
  uint64_t h = 1469598103934665603ull;
  for (const char *s = a; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  for (const char *s = b; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

// Adds one record to its (kind, name) slot; callers hold `lock`.
static void add(const char *kind, const char *name, uint64_t ns, uint64_t bytes) {
  if (!name) name = "?";
  uint64_t h = fnv1a(kind, name);
  for (size_t probe = 0; probe < SLOTS; probe++) {
    Slot *s = &slots[(h + probe) % SLOTS];
    if (!s->name) {
      s->kind = kind;
      s->name = strdup(name);
      if (!s->name) break;
    } else if (s->kind != kind || strcmp(s->name, name) != 0) {
      continue;
    }
    s->count++;
    s->total_ns += ns;
    s->bytes += bytes;
    return;
  }
  overflow++;
}

static const char *copy_kind(uint8_t k) {
  switch (k) {
  case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "HtoD";
  case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "DtoH";
  case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "DtoD";
  case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH: return "HtoH";
  case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP: return "PtoP";
  default: return "other";
  }
}

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
  *buffer = aligned_alloc(8, BUFFER_BYTES);
  *size = *buffer ? BUFFER_BYTES : 0;
  *max_records = 0; // as many as fit
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer,
                                      size_t size, size_t valid) {
  (void)size;
  CUpti_Activity *rec = NULL;
  pthread_mutex_lock(&lock);
  while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
    switch (rec->kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
      CUpti_ActivityKernel10 *k = (CUpti_ActivityKernel10 *)rec;
      add("kernel", k->name, k->end - k->start, 0);
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
      CUpti_ActivityMemcpy6 *m = (CUpti_ActivityMemcpy6 *)rec;
      add("memcpy", copy_kind(m->copyKind), m->end - m->start, m->bytes);
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
      CUpti_ActivityMemset4 *m = (CUpti_ActivityMemset4 *)rec;
      add("memset", "memset", m->end - m->start, m->bytes);
      break;
    }
    default:
      break;
    }
  }
  size_t lost = 0;
  if (cuptiActivityGetNumDroppedRecords(ctx, stream, &lost) == CUPTI_SUCCESS) dropped += lost;
  pthread_mutex_unlock(&lock);
  free(buffer);
}

static void at_exit(void) {
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  const char *path = getenv("KERNEL_TRACE_OUT");
  if (!path || !*path) path = "kernel-trace.csv";
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "kernel_trace: cannot write %s\n", path);
    return;
  }
  pthread_mutex_lock(&lock);
  fprintf(f, "kind,count,total_ns,bytes,name\n");
  for (size_t i = 0; i < SLOTS; i++) {
    Slot *s = &slots[i];
    if (!s->name) continue;
    // Names go last and unquoted: C++ kernel names hold commas, the reader
    // splits on the first four only.
    fprintf(f, "%s,%llu,%llu,%llu,%s\n", s->kind, (unsigned long long)s->count,
            (unsigned long long)s->total_ns, (unsigned long long)s->bytes, s->name);
  }
  pthread_mutex_unlock(&lock);
  fclose(f);
  if (dropped || overflow)
    fprintf(stderr, "kernel_trace: %llu records dropped, %llu names over the table\n",
            (unsigned long long)dropped, (unsigned long long)overflow);
}

// Called by the CUDA driver (CUDA_INJECTION64_PATH); returns 1 when tracing.
int InitializeInjection(void) {
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS) {
    fprintf(stderr, "kernel_trace: CUPTI refused the activity callbacks\n");
    return 0;
  }
  int ok = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) == CUPTI_SUCCESS;
  ok &= cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY) == CUPTI_SUCCESS;
  ok &= cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET) == CUPTI_SUCCESS;
  if (!ok) fprintf(stderr, "kernel_trace: some activity kinds could not be enabled\n");
  atexit(at_exit);
  return 1;
}
