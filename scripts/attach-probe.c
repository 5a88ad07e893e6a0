/*
 * What attaching a tmpfs file costs per way of mapping it, without the crate: the
 * numbers behind the `attach` bench (docs/guide/04-processes-and-pool.md).
 *
 * A file of MIB MiB on /dev/shm, written once (so its pages are in memory and up
 * to date), is mapped afresh REPS times per variant (variants interleaved), a part
 * of it (FRAC of the elements from START) is doubled in place, and it is unmapped:
 *
 *   inproc        the kernel on a mapping made and faulted in before (no attach)
 *   lazy          mmap; pages fault in on first touch (fault-around: 16 per fault)
 *   map_populate  mmap(MAP_POPULATE) of the whole file
 *   pop_read      mmap, then madvise(MADV_POPULATE_READ) of the part
 *   pop_write     mmap, then madvise(MADV_POPULATE_WRITE) of the part
 *   part_mapping  mmap, then a second mapping of the part's pages, MAP_POPULATE
 *
 * Prints medians of CPU time (CLOCK_PROCESS_CPUTIME_ID: load-independent, unlike
 * wall time on a busy machine) split into map+populate / kernel / munmap, the wall
 * time, and minor faults (getrusage; counts populate's faults too).
 *
 *   cc -O2 -o /tmp/attach-probe scripts/attach-probe.c
 *   /tmp/attach-probe 256 15          # the bench's case
 *   /tmp/attach-probe 1024 15 0.01 0.5  # a worker touching 1% of 1 GiB
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif

enum { INPROC, LAZY, MAP_POP, POP_READ, POP_WRITE, PART_MAP, NV };
static const char *names[NV] = {"inproc",   "lazy",      "map_populate",
                                "pop_read", "pop_write", "part_mapping"};

static double cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
static double wall(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
static long minflt(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt;
}
static void kernel(double *a, size_t lo, size_t hi) {
  for (size_t i = lo; i < hi; i++) a[i] *= 2.0;
}
static int cmp(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}
static double median(double *v, int n) {
  qsort(v, n, sizeof *v, cmp);
  return v[n / 2];
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 256;
  int reps = argc > 2 ? atoi(argv[2]) : 15;
  double frac = argc > 3 ? atof(argv[3]) : 1.0, start = argc > 4 ? atof(argv[4]) : 0.0;
  size_t len = mib << 20, n = len / 8, page = 4096;
  size_t lo = (size_t)(n * start), hi = lo + (size_t)(n * frac);
  if (reps < 1 || hi > n || hi <= lo) return 2;
  size_t off = lo * 8 / page * page, plen = (hi * 8 + page - 1) / page * page - off;

  char path[64];
  snprintf(path, sizeof path, "/dev/shm/attach-probe-%d", getpid());
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0 || posix_fallocate(fd, 0, len)) return perror("file"), 1;
  unlink(path); /* gone when we exit */
  double *keep = mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (keep == MAP_FAILED) return perror("mmap"), 1;
  for (size_t i = 0; i < n; i++) keep[i] = 1.0;

  double *c[NV], *w[NV], *ph[NV][3];
  long faults[NV] = {0};
  for (int v = 0; v < NV; v++) {
    c[v] = calloc(reps, sizeof(double));
    w[v] = calloc(reps, sizeof(double));
    for (int k = 0; k < 3; k++) ph[v][k] = calloc(reps, sizeof(double));
  }
  for (int r = 0; r < reps; r++)
    for (int v = 0; v < NV; v++) {
      long f0 = minflt();
      double c0 = cpu(), w0 = wall(), c1, c2;
      if (v == INPROC) {
        c1 = cpu();
        kernel(keep, lo, hi);
        c2 = cpu();
      } else {
        double *a = mmap(0, len, PROT_READ | PROT_WRITE,
                         MAP_SHARED | (v == MAP_POP ? MAP_POPULATE : 0), fd, 0);
        if (a == MAP_FAILED) return perror("mmap"), 1;
        if (v == POP_READ && madvise((char *)a + off, plen, MADV_POPULATE_READ))
          return perror("MADV_POPULATE_READ"), 1;
        if (v == POP_WRITE && madvise((char *)a + off, plen, MADV_POPULATE_WRITE))
          return perror("MADV_POPULATE_WRITE"), 1;
        if (v == PART_MAP &&
            mmap((char *)a + off, plen, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, off) == MAP_FAILED)
          return perror("part mmap"), 1;
        c1 = cpu();
        kernel(a, lo, hi);
        c2 = cpu();
        munmap(a, len);
      }
      double c3 = cpu();
      c[v][r] = c3 - c0;
      w[v][r] = wall() - w0;
      ph[v][0][r] = c1 - c0;
      ph[v][1][r] = c2 - c1;
      ph[v][2][r] = c3 - c2;
      faults[v] += minflt() - f0;
    }
  printf("%zu MiB, elements %zu..%zu (%.2f%%), %d reps; medians in ms\n", mib, lo, hi,
         100.0 * (hi - lo) / n, reps);
  double base = median(c[INPROC], reps);
  for (int v = 0; v < NV; v++) {
    double cm = median(c[v], reps);
    printf("%-13s cpu %7.2f (x%.2f) = map+populate %6.2f + kernel %7.2f + munmap %6.2f"
           " | wall %7.2f | minflt %ld\n",
           names[v], cm * 1e3, cm / base, median(ph[v][0], reps) * 1e3,
           median(ph[v][1], reps) * 1e3, median(ph[v][2], reps) * 1e3,
           median(w[v], reps) * 1e3, faults[v] / reps);
  }
  return 0;
}
