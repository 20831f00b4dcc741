/* SPDX-License-Identifier: MIT */
/* Helpers shared by the benchmark's C programs: clock, CPU time, pinning, percentiles, JSON. */
#ifndef SHMCHAN_BENCH_COMMON_H
#define SHMCHAN_BENCH_COMMON_H

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>

static inline int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* User + system CPU time of this process, in nanoseconds. */
static inline int64_t cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
	       ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Pins this process to one CPU; cpu < 0 leaves it alone. Exits on failure. */
static inline void pin_to(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		fprintf(stderr, "cannot pin to CPU %d: %s\n", cpu, strerror(errno));
		exit(2);
	}
}

/* Parses "A,B" into two CPU numbers; "" or NULL means no pinning (-1, -1). */
static inline void parse_cpus(const char *s, int *a, int *b)
{
	*a = *b = -1;
	if (s && *s && sscanf(s, "%d,%d", a, b) != 2) {
		fprintf(stderr, "bad --cpus value %s (want A,B)\n", s);
		exit(2);
	}
}

static int cmp_i64(const void *x, const void *y)
{
	int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;

	return (a > b) - (a < b);
}

/* Sorts v and prints "name":{"p50":..,"p99":..,"p999":..,"max":..,"mean":..,"n":..} (values / div). */
static inline void print_percentiles(const char *name, int64_t *v, size_t n, double div)
{
	double mean = 0;
	size_t i;

	if (n == 0) {
		printf("\"%s\":null", name);
		return;
	}
	qsort(v, n, sizeof(*v), cmp_i64);
	for (i = 0; i < n; i++)
		mean += (double)v[i];
	mean /= (double)n;
#define PCT(p) ((double)v[(size_t)((p) * (double)(n - 1) + 0.5)] / div)
	printf("\"%s\":{\"p50\":%.4f,\"p99\":%.4f,\"p999\":%.4f,\"max\":%.4f,\"mean\":%.4f,\"n\":%zu}", name, PCT(0.5),
	       PCT(0.99), PCT(0.999), (double)v[n - 1] / div, mean / div, n);
#undef PCT
}

/* Round trips timed one by one are quantised by the clock (10 ns steps on some VMs); the median of
   the mean of each run of BATCH consecutive round trips is a finer estimate of the typical one. */
#define BATCH 64

/* The median of n doubles (sorts them). */
static int cmp_dbl(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return (a > b) - (a < b);
}

static inline double median(double *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_dbl);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The byte the writer stores everywhere in message `seq` (never 0). */
static inline unsigned fill_value(uint64_t seq)
{
	return (unsigned)(seq % 251) + 1;
}

/* Reads every byte of p (n a multiple of 8) and returns the fill value, or -1 if not uniform.
   Compiled (at -O3) for AVX2 too, picked at run time: a reader as fast as numpy's sum. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
__attribute__((target_clones("avx2", "default")))
#endif
#endif
static int check_fill(const void *p, uint64_t n)
{
	const uint64_t *w = p;
	uint64_t sum = 0, i, words = n / 8, v;

	if (n == 0)
		return -1;
	for (i = 0; i < words; i++)
		sum += w[i];
	v = ((const unsigned char *)p)[0];
	return sum == words * (v * 0x0101010101010101ULL) ? (int)v : -1;
}

#endif
