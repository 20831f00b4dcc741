/* SPDX-License-Identifier: MIT */
/* Sleeping and waking across processes: a futex on a 32-bit word of the shared header. */
#include <errno.h>
#include <linux/futex.h>
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

void shmchan_futex_wake_all(_Atomic uint32_t *word)
{
	syscall(SYS_futex, (void *)word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}
