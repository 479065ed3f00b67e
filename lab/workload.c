/*
 * ballast lab workload: runs inside a lab guest (static binary in the initramfs).
 *
 * It grows, touches and frees an anonymous working set in phases and reports, on stdout
 * (the guest's serial console), one machine-readable line per event:
 *
 *   BALLAST phase t=<s> idx=<n> op=<alloc|touch|idle|free|loop> arg=<n> ws_kib=<KiB>
 *   BALLAST rate t=<s> idx=<n> op=<op> pages=<n> secs=<s> pages_per_s=<n> ws_kib=<KiB>
 *   BALLAST alloc-failed t=<s> idx=<n> want_kib=<KiB> ws_kib=<KiB> errno=<n>
 *   BALLAST workload-start t=<s> spec=<spec> report_s=<s>
 *   BALLAST workload-error msg=<text>
 *
 * The schedule comes as one argument (the init script passes ballast.workload= from the kernel
 * command line, so one image serves every guest with its own staggered schedule):
 *
 *   spec  := step ("," step)*
 *   step  := "idle:" S       hold the working set untouched for S seconds
 *          | "alloc:" M      grow or shrink the working set to M MiB, writing each new page once
 *          | "touch:" S      write every page of the working set, over and over, for S seconds
 *          | "idle@" S       hold the working set until S seconds into the cycle
 *          | "touch@" S      touch the working set until S seconds into the cycle
 *          | "free"          release the whole working set (alloc:0)
 *          | "loop"          start again from the first step (must be last)
 *          | "loop@" P       wait until P seconds into the cycle and start the next one (last)
 *
 * The "@" steps make the schedule a clock, as a service's demand is: its work arrives at set
 * times whether or not the program is ready. A program that stalls (an alloc waiting for the
 * host to swap pages in) loses the touch time its stall overran; it does not catch up in its
 * idle time. A cycle starts P seconds after the previous one with "loop@P" (at once with
 * "loop", which lets a late program carry its delay on, the elastic schedule).
 *
 * Every page written gets a different value (page index and pass), so KSM cannot merge them
 * and the host really has to back them.
 *
 * Format and parser: docs/lab.md, src/lab/console.ts. Times are seconds since guest boot
 * (CLOCK_BOOTTIME), the clock the init script's meminfo lines use too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
/* The working set is a list of chunks so shrinking can hand whole chunks back with munmap. */
#define CHUNK_PAGES 256UL /* 1 MiB */
#define MAX_CHUNKS 65536

enum op { OP_IDLE, OP_ALLOC, OP_TOUCH, OP_FREE, OP_LOOP };
static const char *op_names[] = {"idle", "alloc", "touch", "free", "loop"};

struct step {
  enum op op;
  long arg;
  /* arg is a time into the cycle (an "@" step) rather than a duration */
  int at;
};

static unsigned char *chunks[MAX_CHUNKS];
static unsigned long nchunks;
static unsigned long pass_no;
static double report_s = 2.0;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One write() per line so lines from this program and the init script do not interleave. */
static void emit(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t off = 0;
  while (off < n) {
    ssize_t w = write(1, buf + off, (size_t)(n - off));
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    off += w;
  }
}

static unsigned long ws_kib(void) { return nchunks * CHUNK_PAGES * (PAGE / 1024); }

static inline void write_page(unsigned char *p, unsigned long page_index) {
  volatile uint64_t *w = (volatile uint64_t *)p;
  w[0] = ((uint64_t)page_index << 20) ^ pass_no;
  w[1] = pass_no;
}

static void report_rate(int idx, enum op op, unsigned long pages, double secs) {
  double rate = secs > 0 ? (double)pages / secs : 0;
  emit("BALLAST rate t=%.3f idx=%d op=%s pages=%lu secs=%.3f pages_per_s=%.0f ws_kib=%lu", now_s(), idx,
       op_names[op], pages, secs, rate, ws_kib());
}

/* Grows or shrinks the working set to `mib` MiB; new pages are written once (and counted). */
static void do_alloc(int idx, long mib) {
  unsigned long want = (unsigned long)mib;
  if (want > MAX_CHUNKS) want = MAX_CHUNKS;
  while (nchunks > want) {
    munmap(chunks[--nchunks], CHUNK_PAGES * PAGE);
    chunks[nchunks] = NULL;
  }
  double t0 = now_s(), last = t0;
  unsigned long pages = 0, since = 0;
  pass_no++;
  while (nchunks < want) {
    void *p = mmap(NULL, CHUNK_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      emit("BALLAST alloc-failed t=%.3f idx=%d want_kib=%lu ws_kib=%lu errno=%d", now_s(), idx, want * 1024, ws_kib(), errno);
      break;
    }
    chunks[nchunks] = p;
    for (unsigned long i = 0; i < CHUNK_PAGES; i++) write_page((unsigned char *)p + i * PAGE, nchunks * CHUNK_PAGES + i);
    nchunks++;
    pages += CHUNK_PAGES;
    since += CHUNK_PAGES;
    double t = now_s();
    if (t - last >= report_s) {
      report_rate(idx, OP_ALLOC, since, t - last);
      last = t;
      since = 0;
    }
  }
  double t1 = now_s();
  if (pages > 0) report_rate(idx, OP_ALLOC, pages, t1 - t0);
}

/* Sleeps until `end` (CLOCK_BOOTTIME seconds); returns at once when it has passed. */
static void sleep_until(double end) {
  for (;;) {
    double left = end - now_s();
    if (left <= 0) return;
    struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
    nanosleep(&ts, NULL);
  }
}

/* Writes every page of the working set over and over until `end`, reporting the rate. A step
 * whose end has already passed (a late program under a clocked schedule) reports 0 pages in
 * 0 s, so the console shows the touch time lost. */
static void do_touch(int idx, double end) {
  double t0 = now_s(), last = t0;
  unsigned long since = 0;
  if (t0 >= end) {
    report_rate(idx, OP_TOUCH, 0, 0);
    return;
  }
  if (nchunks == 0) {
    sleep_until(end);
    report_rate(idx, OP_TOUCH, 0, now_s() - t0);
    return;
  }
  for (;;) {
    pass_no++;
    for (unsigned long c = 0; c < nchunks; c++) {
      for (unsigned long i = 0; i < CHUNK_PAGES; i++) write_page(chunks[c] + i * PAGE, c * CHUNK_PAGES + i);
      since += CHUNK_PAGES;
      /* Check the clock once per chunk: cheap enough, and fine-grained under a slow host. */
      double t = now_s();
      if (t - last >= report_s) {
        report_rate(idx, OP_TOUCH, since, t - last);
        last = t;
        since = 0;
      }
      if (t >= end) {
        if (since > 0) report_rate(idx, OP_TOUCH, since, t - last);
        return;
      }
    }
  }
}

static int parse_spec(const char *spec, struct step *steps, int max) {
  int n = 0;
  const char *p = spec;
  while (*p) {
    if (n >= max) return -1;
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    char tok[64];
    if (len == 0 || len >= sizeof tok) return -1;
    memcpy(tok, p, len);
    tok[len] = 0;
    char *colon = strchr(tok, ':');
    char *atsign = strchr(tok, '@');
    int at = 0;
    if (!colon && atsign) {
      colon = atsign;
      at = 1;
    }
    long arg = 0;
    if (colon) {
      *colon = 0;
      char *e;
      errno = 0;
      arg = strtol(colon + 1, &e, 10);
      if (errno || *e || arg < 0) return -1;
    }
    enum op op;
    if (!strcmp(tok, "idle") && colon) op = OP_IDLE;
    else if (!strcmp(tok, "alloc") && colon && !at) op = OP_ALLOC;
    else if (!strcmp(tok, "touch") && colon) op = OP_TOUCH;
    else if (!strcmp(tok, "free") && !colon) op = OP_FREE;
    else if (!strcmp(tok, "loop") && (!colon || at)) op = OP_LOOP;
    else return -1;
    if (op == OP_LOOP && end) return -1; /* loop must be last */
    steps[n].op = op;
    steps[n].arg = arg;
    steps[n].at = at;
    n++;
    p = end ? end + 1 : p + len;
  }
  return n;
}

/*
 * Why a second process: under TCG, QEMU sizes its software TLB only when the guest flushes its
 * TLB, and a guest flushes it when it switches address spaces. A guest running this program
 * alone switches only when its 2 s reporter wakes, so whether a touch step finds a TLB big
 * enough for its working set (one miss per page, or none) depends on when those few flushes
 * happened: measured here, the same guest touched the same 64 MiB at 3 or at 20 Mpages/s
 * from one cycle to the next. A child that wakes every 100 ms makes QEMU fit the TLB to the
 * working set within a fraction of a second, so throughput follows memory, not chance. KVM
 * guests do not have this effect (their TLB is the CPU's); there the child is 10 wakeups a second.
 */
static void start_ticker(void) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return; /* parent (or fork failed: run without it) */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  for (;;) usleep(100000);
}

int main(int argc, char **argv) {
  const char *spec = argc > 1 ? argv[1] : "";
  if (argc > 2) report_s = atof(argv[2]);
  if (report_s < 0.1) report_s = 0.1;
  signal(SIGPIPE, SIG_IGN);
  struct step steps[128];
  int n = parse_spec(spec, steps, 128);
  if (n < 0) {
    emit("BALLAST workload-error msg=bad-spec spec=%s", spec);
    return 2;
  }
  emit("BALLAST workload-start t=%.3f spec=%s report_s=%.1f", now_s(), n ? spec : "-", report_s);
  if (n > 0) start_ticker();
  if (n == 0) {
    for (;;) pause();
  }
  double cycle = now_s(); /* when the current cycle started: the "@" steps' origin */
  for (int i = 0;; i++) {
    if (i >= n) {
      /* Schedule done without a loop: hold what we have, quietly. */
      emit("BALLAST phase t=%.3f idx=%d op=done arg=0 ws_kib=%lu", now_s(), i, ws_kib());
      for (;;) pause();
    }
    struct step s = steps[i];
    double t = now_s();
    emit("BALLAST phase t=%.3f idx=%d op=%s arg=%ld ws_kib=%lu", t, i, op_names[s.op], s.arg, ws_kib());
    double until = s.at ? cycle + (double)s.arg : t + (double)s.arg;
    switch (s.op) {
      case OP_IDLE:
        sleep_until(until);
        break;
      case OP_ALLOC:
        do_alloc(i, s.arg);
        break;
      case OP_TOUCH:
        do_touch(i, until);
        break;
      case OP_FREE:
        do_alloc(i, 0);
        break;
      case OP_LOOP:
        if (s.at) {
          sleep_until(until);
          cycle = until;
        } else {
          cycle = now_s();
        }
        i = -1;
        break;
    }
  }
}
