/* SPDX-License-Identifier: MIT */
/* The platform: clocks and deadlines, the page size, CPU affinity, futexes and msync. */
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int64_t shmchan_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t shmchan_deadline(int64_t now, int64_t timeout_ns)
{
	if (timeout_ns < 0 || timeout_ns > INT64_MAX - now)
		return INT64_MAX;
	return now + timeout_ns;
}

uint64_t shmchan_page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);

	return p > 0 ? (uint64_t)p : 4096;
}

/*
 * How long a spinning waiter polls before it also calls sched_yield() between polls. A process
 * allowed on one CPU only surely shares it with its peer, which cannot run until we yield: after
 * 5 us (both on one vCPU, a 64 B round trip went from 213 us to 17 us). Otherwise only after
 * 50 us: on separate CPUs replies come within microseconds, and yielding early cost a 64 B
 * round trip about 15 us on this VM.
 */
int64_t shmchan_polite_after_ns(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) == 1)
		return 5000;
	return 50000;
}

/*
 * Sleeps while *word == expected, at most timeout_ns (< 0: no limit). Returns 0 when woken or when
 * the word already differs, -ETIMEDOUT, or -EINTR when a signal arrived. Shared (not
 * FUTEX_PRIVATE) because the word lives in memory mapped by several processes.
 */
int shmchan_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
	struct timespec ts, *tsp = NULL;
	long rc;

	if (timeout_ns >= 0) {
		ts.tv_sec = (time_t)(timeout_ns / 1000000000);
		ts.tv_nsec = (long)(timeout_ns % 1000000000);
		tsp = &ts;
	}
	rc = syscall(SYS_futex, (void *)word, FUTEX_WAIT, expected, tsp, NULL, 0);
	if (rc == 0)
		return 0;
	switch (errno) {
	case EAGAIN:
		return 0;
	case ETIMEDOUT:
		return -ETIMEDOUT;
	case EINTR:
		return -EINTR;
	default:
		return -errno;
	}
}

void shmchan_futex_wake(_Atomic uint32_t *word)
{
	syscall(SYS_futex, (void *)word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

int shmchan_futex_wake_all(_Atomic uint32_t *word)
{
	return (int)syscall(SYS_futex, (void *)word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

void shmchan_msync_range(uint8_t *start, uint64_t len, int flags)
{
	uintptr_t a = (uintptr_t)start & ~((uintptr_t)shmchan_page_size() - 1);

	(void)msync((void *)a, (size_t)((uintptr_t)start + len - a), flags);
}

void shmchan_signals_hold(sigset_t *old)
{
	sigset_t all;

	sigfillset(&all);
	/* a fault must still reach its handler (the SIGBUS guard) or kill us, never stay pending */
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_BLOCK, &all, old);
}

void shmchan_signals_restore(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

int shmchan_nap(int64_t ns, const sigset_t *old)
{
	struct timespec t = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};

	return ppoll(NULL, 0, &t, old) < 0 && errno == EINTR ? -EINTR : 0;
}
