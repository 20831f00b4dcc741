/* SPDX-License-Identifier: MIT */
/*
 * Floors for `shmchan bench`: what the hardware and kernel can do with no channel at all.
 *
 *   floors memcpy   --bytes N,N,... --seconds S [--cpus A,B]   single-process memcpy bandwidth
 *   floors pingpong --seconds S [--cpus A,B]   one cache line bounced between two processes
 *   floors futex    --seconds S [--cpus A,B]   two processes waking each other with FUTEX_WAKE
 *   floors handoff  --bytes N,N,... --seconds S [--cpus A,B]   two processes, two shared buffers: one
 *                   memsets a buffer, the other sums every 8-byte word of it (spinning on a flag)
 *
 * Each prints one JSON object per line on stdout.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define MAX_SAMPLES 2000000

struct shared {
	_Alignas(64) _Atomic uint32_t word; /* the bounced cache line / futex word */
	_Alignas(64) _Atomic uint32_t ready;
	_Atomic int64_t child_cpu_ns;
};

static double seconds = 0.5;
static int cpu_a = -1, cpu_b = -1;

static void do_memcpy(const char *list)
{
	char *copy = strdup(list), *save = NULL, *tok;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t n = strtoull(tok, NULL, 10);
		char *src = aligned_alloc(4096, (n + 4095) / 4096 * 4096);
		char *dst = aligned_alloc(4096, (n + 4095) / 4096 * 4096);
		double rates[64];
		size_t nr = 0;
		int64_t end, t0;

		if (!src || !dst) {
			fprintf(stderr, "out of memory for %llu bytes\n", (unsigned long long)n);
			exit(1);
		}
		memset(src, 1, n);
		memset(dst, 2, n);
		memcpy(dst, src, n); /* warm up */
		end = now_ns() + (int64_t)(seconds * 1e9);
		/* chunks of about seconds/20 each; the median chunk rate is reported */
		do {
			int64_t chunk_end;
			uint64_t reps = 0, batch = n >= 65536 ? 1 : 65536 / n, k;

			t0 = now_ns();
			chunk_end = t0 + (int64_t)(seconds * 1e9 / 20);
			do {
				for (k = 0; k < batch; k++) {
					memcpy(dst, src, n);
					/* the copy must happen: the compiler may not assume dst is unused */
					__asm__ volatile("" : : "r"(dst), "r"(src) : "memory");
				}
				reps += batch;
			} while (now_ns() < chunk_end);
			rates[nr++] = (double)reps * (double)n / (double)(now_ns() - t0);
		} while (now_ns() < end && nr < 64);
		printf("{\"floor\":\"memcpy\",\"bytes\":%llu,\"gbps\":%.3f}\n", (unsigned long long)n, median(rates, nr));
		fflush(stdout);
		free(src);
		free(dst);
	}
	free(copy);
}

static long futex(_Atomic uint32_t *w, int op, uint32_t val)
{
	return syscall(SYS_futex, (void *)w, op, val, NULL, NULL, 0);
}

/* Waits until *w == want: spinning (spin=1) or sleeping on the futex (spin=0). */
static void wait_for(_Atomic uint32_t *w, uint32_t want, int spin)
{
	uint32_t v;

	while ((v = atomic_load_explicit(w, memory_order_acquire)) != want) {
		if (spin)
			cpu_relax();
		else
			futex(w, FUTEX_WAIT, v);
	}
}

static void post(_Atomic uint32_t *w, uint32_t v, int spin)
{
	atomic_store_explicit(w, v, memory_order_release);
	if (!spin)
		futex(w, FUTEX_WAKE, 1);
}

/* Round trips between two processes through one shared word: spin (cache line) or futex sleep. */
static void do_roundtrip(int spin)
{
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int64_t *rtt = malloc(sizeof(int64_t) * MAX_SAMPLES);
	double *batch = malloc(sizeof(double) * (MAX_SAMPLES / BATCH + 1));
	uint32_t i, n = 0, warm = 1000;
	int64_t end, c0, c1, batch_t0 = 0;
	size_t nb = 0;
	pid_t pid;
	int status;

	if (sh == MAP_FAILED || !rtt || !batch) {
		perror("floors");
		exit(1);
	}
	atomic_store(&sh->word, 0);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		pin_to(cpu_b);
		atomic_store(&sh->ready, 1);
		/* echo: wait for 2k+1, answer 2k+2, until the parent posts 0xffffffff */
		c0 = cpu_ns();
		for (i = 0;; i++) {
			uint32_t v;
			while ((v = atomic_load_explicit(&sh->word, memory_order_acquire)) != 2 * i + 1 && v != 0xffffffffu) {
				if (spin)
					cpu_relax();
				else
					futex(&sh->word, FUTEX_WAIT, v);
			}
			if (v == 0xffffffffu)
				break;
			post(&sh->word, 2 * i + 2, spin);
		}
		c1 = cpu_ns();
		atomic_store(&sh->child_cpu_ns, i ? (c1 - c0) / i : 0);
		_exit(0);
	}
	pin_to(cpu_a);
	while (!atomic_load(&sh->ready))
		cpu_relax();
	c0 = 0;
	end = 0;
	for (i = 0;; i++) {
		int64_t t0 = now_ns(), t1;

		if (i == warm) {
			end = t0 + (int64_t)(seconds * 1e9);
			c0 = cpu_ns();
			batch_t0 = t0;
		}
		post(&sh->word, 2 * i + 1, spin);
		wait_for(&sh->word, 2 * i + 2, spin);
		t1 = now_ns();
		if (i >= warm) {
			rtt[n++] = t1 - t0;
			if (n % BATCH == 0) {
				batch[nb++] = (double)(t1 - batch_t0) / BATCH / 1000.0;
				batch_t0 = t1;
			}
			if (t1 >= end || n == MAX_SAMPLES)
				break;
		}
	}
	c1 = cpu_ns();
	post(&sh->word, 0xffffffffu, spin);
	waitpid(pid, &status, 0);
	printf("{\"floor\":\"%s\",", spin ? "cacheline_pingpong" : "futex_roundtrip");
	print_percentiles("rtt_us", rtt, n, 1000.0);
	printf(",\"rtt_batch_us\":%.5f", median(batch, nb));
	printf(",\"cpu_us_per_rt\":{\"a\":%.4f,\"b\":%.4f}}\n", (double)(c1 - c0) / n / 1000.0,
	       (double)atomic_load(&sh->child_cpu_ns) / 1000.0);
	fflush(stdout);
	free(rtt);
	free(batch);
	munmap(sh, sizeof(*sh));
}

/* One process writes every byte of a buffer, the other reads every byte, two buffers in turn: the
   cross-core bandwidth any two-process transport is bounded by, with no transport at all. */
static void do_handoff(const char *list)
{
	char *copy = strdup(list), *save = NULL, *tok;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t n = strtoull(tok, NULL, 10), k;
		size_t len = (size_t)((n + 4095) / 4096 * 4096);
		struct hshared {
			_Alignas(64) _Atomic uint64_t full[2]; /* message number + 1 in buffer i, 0 = empty */
			_Alignas(64) _Atomic int64_t done_ns;
			_Atomic uint64_t done_msgs;
			_Atomic int64_t errors;
		} *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		char *buf = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		pid_t pid;
		int status;

		if (sh == MAP_FAILED || buf == MAP_FAILED) {
			perror("floors handoff");
			exit(1);
		}
		pid = fork();
		if (pid == 0) {
			/* consumer: take messages until the producer posts UINT64_MAX */
			int64_t t0 = 0;
			uint64_t got = 0, warm = 16;

			pin_to(cpu_b);
			for (k = 0;; k++) {
				uint64_t v;
				while ((v = atomic_load_explicit(&sh->full[k & 1], memory_order_acquire)) == 0)
					cpu_relax();
				if (v == UINT64_MAX)
					break;
				if (check_fill(buf + (k & 1) * len, n) != (int)fill_value(v - 1))
					atomic_fetch_add(&sh->errors, 1);
				atomic_store_explicit(&sh->full[k & 1], 0, memory_order_release);
				if (k + 1 == warm)
					t0 = now_ns();
				else if (k + 1 > warm)
					got++;
			}
			atomic_store(&sh->done_ns, now_ns() - t0);
			atomic_store(&sh->done_msgs, got);
			_exit(0);
		}
		pin_to(cpu_a);
		{
			int64_t end = now_ns() + (int64_t)(seconds * 1e9) + 50000000;
			for (k = 0;; k++) {
				while (atomic_load_explicit(&sh->full[k & 1], memory_order_acquire) != 0)
					cpu_relax();
				if (now_ns() >= end) {
					atomic_store_explicit(&sh->full[k & 1], UINT64_MAX, memory_order_release);
					break;
				}
				memset(buf + (k & 1) * len, (int)fill_value(k), n);
				atomic_store_explicit(&sh->full[k & 1], k + 1, memory_order_release);
			}
		}
		waitpid(pid, &status, 0);
		printf("{\"floor\":\"handoff\",\"bytes\":%llu,\"gbps\":%.3f,\"errors\":%lld}\n", (unsigned long long)n,
		       (double)atomic_load(&sh->done_msgs) * (double)n / (double)atomic_load(&sh->done_ns),
		       (long long)atomic_load(&sh->errors));
		fflush(stdout);
		munmap(buf, 2 * len);
		munmap(sh, sizeof(*sh));
	}
	free(copy);
}

int main(int argc, char **argv)
{
	const char *what, *bytes = "64,4096,65536,1048576,8388608,33554432", *cpus = NULL;
	int i;

	if (argc < 2) {
		fprintf(stderr, "usage: floors memcpy|pingpong|futex|handoff [--bytes N,...] [--seconds S] [--cpus A,B]\n");
		return 2;
	}
	what = argv[1];
	for (i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--bytes"))
			bytes = argv[i + 1];
		else if (!strcmp(argv[i], "--seconds"))
			seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--cpus"))
			cpus = argv[i + 1];
		else {
			fprintf(stderr, "unknown option %s\n", argv[i]);
			return 2;
		}
	}
	parse_cpus(cpus, &cpu_a, &cpu_b);
	if (!strcmp(what, "memcpy")) {
		pin_to(cpu_a);
		do_memcpy(bytes);
	} else if (!strcmp(what, "pingpong")) {
		do_roundtrip(1);
	} else if (!strcmp(what, "futex")) {
		do_roundtrip(0);
	} else if (!strcmp(what, "handoff")) {
		do_handoff(bytes);
	} else {
		fprintf(stderr, "unknown floor %s\n", what);
		return 2;
	}
	return 0;
}
