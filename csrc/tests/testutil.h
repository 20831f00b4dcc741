/* SPDX-License-Identifier: MIT */
/* Tiny helpers for the C tests: each test is one program that exits 0 (pass), 1 (fail) or 77 (skip). */
#ifndef SHMCHAN_TESTUTIL_H
#define SHMCHAN_TESTUTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmchan.h"

#define T_SKIP 77

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                      \
		}                                                                     \
	} while (0)

/* CHECK with a printf-style explanation of what was seen. */
#define CHECK_MSG(cond, ...)                                                                  \
	do {                                                                                  \
		if (!(cond)) {                                                                \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                         \
			fputc('\n', stderr);                                                  \
			exit(1);                                                              \
		}                                                                             \
	} while (0)

#define CHECK_RC(expr, want)                                                                  \
	do {                                                                                  \
		int rc_ = (expr);                                                             \
		if (rc_ != (want)) {                                                          \
			fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d (%s)\n", __FILE__, __LINE__, \
				#expr, rc_, shmchan_strerror(rc_), (want), shmchan_strerror(want));  \
			exit(1);                                                              \
		}                                                                             \
	} while (0)

/* ---- names and cleanup ---- */

/* The pid of the test program's main process: every name a test makes ends in "-<that pid>". */
static inline pid_t *t_pid_slot(void)
{
	static pid_t pid;
	return &pid;
}

static inline pid_t t_main_pid(void)
{
	pid_t p = *t_pid_slot();
	return p ? p : getpid();
}

/* A channel name unique to this test program (the same in its forked children). Static buffer. */
static inline const char *t_name(const char *tag)
{
	static char buf[128];
	snprintf(buf, sizeof(buf), "ctest-%s-%ld", tag, (long)t_main_pid());
	return buf;
}

/* The same into a caller's buffer, for tests that need several names at once. */
static inline char *t_name_buf(char *buf, size_t n, const char *tag)
{
	snprintf(buf, n, "ctest-%s-%ld", tag, (long)t_main_pid());
	return buf;
}

/* The /dev/shm path of a channel name. */
static inline char *t_shm_path(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "/dev/shm/shmchan.%s", name);
	return buf;
}

static inline int t_ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Removes every shm object and temporary directory this test program made (by name pattern). */
static inline void t_cleanup(void)
{
	char suffix[32], prefix[64], path[4096];
	struct dirent *e;
	DIR *d;

	snprintf(suffix, sizeof(suffix), "-%ld", (long)t_main_pid());
	d = opendir("/dev/shm");
	if (d) {
		while ((e = readdir(d)) != NULL) {
			if (strncmp(e->d_name, "shmchan.ctest-", 14) == 0 && t_ends_with(e->d_name, suffix)) {
				snprintf(path, sizeof(path), "/%s", e->d_name);
				(void)shm_unlink(path);
			}
		}
		closedir(d);
	}
	snprintf(prefix, sizeof(prefix), "shmchan-ctest-%ld-", (long)t_main_pid());
	d = opendir("/tmp");
	if (d) {
		while ((e = readdir(d)) != NULL) {
			if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
				char dir[4096];
				struct dirent *f;
				DIR *sub;
				snprintf(dir, sizeof(dir), "/tmp/%s", e->d_name);
				sub = opendir(dir);
				if (sub) {
					while ((f = readdir(sub)) != NULL) {
						if (strcmp(f->d_name, ".") && strcmp(f->d_name, "..")) {
							snprintf(path, sizeof(path), "%.2000s/%.1000s", dir, f->d_name);
							(void)unlink(path);
						}
					}
					closedir(sub);
				}
				(void)rmdir(dir);
			}
		}
		closedir(d);
	}
}

/* A fresh temporary directory that t_cleanup removes: /tmp/shmchan-ctest-<pid>-XXXXXX. */
static inline char *t_tmpdir(char *buf, size_t n)
{
	snprintf(buf, n, "/tmp/shmchan-ctest-%ld-XXXXXX", (long)t_main_pid());
	return mkdtemp(buf);
}

static inline void t_atexit_cleanup(void)
{
	if (getpid() == t_main_pid())
		t_cleanup(); /* never from a forked child: the parent may still use the objects */
}

/* Call first in main: remembers the main pid, removes leftovers of an earlier run, cleans at exit. */
static inline void t_init(void)
{
	*t_pid_slot() = getpid();
	t_cleanup();
	atexit(t_atexit_cleanup);
	setvbuf(stdout, NULL, _IOLBF, 0);
}

/* ---- time ---- */

static inline int64_t t_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline double t_ms(int64_t ns)
{
	return (double)ns / 1e6;
}

static inline void t_sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

#define T_MS(x) ((int64_t)(x) * 1000000)

/* ---- processes ---- */

/* fork() for a peer: the child dies with its parent and never outlives a hung test. */
static inline pid_t t_fork(void)
{
	pid_t parent = getpid(), pid;

	fflush(NULL);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
	}
	return pid;
}

/* Waits for a child at most timeout_ms (SIGKILL after that). Returns its exit code, 128+signal, or -1. */
static inline int t_wait(pid_t pid, long timeout_ms)
{
	const int64_t deadline = t_now_ns() + T_MS(timeout_ms);
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (t_now_ns() > deadline) {
			fprintf(stderr, "child %ld still running after %ld ms: killed\n", (long)pid, timeout_ms);
			kill(pid, SIGKILL);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			return -1;
		}
		t_sleep_ms(1);
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

/* Names of the failed cases, for the summary line (run.sh shows only the last lines of a failure). */
static inline char *t_failed_names(void)
{
	static char names[1024];
	return names;
}

static inline void t_note_failure(const char *name)
{
	char *s = t_failed_names();
	size_t n = strlen(s);
	snprintf(s + n, 1024 - n, "%s%s", n ? ", " : "", name);
}

/* Checks how a child ended: t_wait's status (exit code, 128+signal, -1 when it had to be killed). */
#define CHECK_CHILD(pid, timeout_ms, want)                                                            \
	do {                                                                                          \
		int st_ = t_wait((pid), (timeout_ms));                                                \
		if (st_ != (want)) {                                                                  \
			fprintf(stderr, "%s:%d: child %ld ended with status %d, wanted %d\n", __FILE__, \
				__LINE__, (long)(pid), st_, (want));                                  \
			exit(1);                                                              \
		}                                                                                     \
	} while (0)

/* Ends a forked peer with _exit: LeakSanitizer would report the parent's handles the child inherited. */
static inline void t_peer_exit(int code)
{
	fflush(NULL);
	_exit(code);
}

/* Runs one test case in a forked child with a watchdog; the parent then removes its leftovers. */
static inline int t_case(const char *name, void (*fn)(void), unsigned timeout_s)
{
	const int64_t t0 = t_now_ns();
	pid_t pid = t_fork();
	int rc;

	if (pid == 0) {
		alarm(timeout_s); /* SIGALRM's default action kills a hung case */
		fn();
		exit(0);
	}
	rc = t_wait(pid, (long)timeout_s * 1000 + 2000);
	t_cleanup();
	if (rc == 0) {
		printf("ok   %s (%.1f ms)\n", name, t_ms(t_now_ns() - t0));
		return 0;
	}
	t_note_failure(name);
	if (rc == 128 + SIGALRM)
		printf("FAIL %s: watchdog fired after %u s (hang)\n", name, timeout_s);
	else if (rc > 128)
		printf("FAIL %s: killed by signal %d\n", name, rc - 128);
	else
		printf("FAIL %s (exit %d)\n", name, rc);
	return 1;
}

/* The exit code of a program that ran its cases through t_case. */
static inline int t_done(int failures)
{
	if (failures)
		printf("FAIL: %d case(s) failed: %s\n", failures, t_failed_names());
	else
		printf("PASS: all cases passed\n");
	return failures ? 1 : 0;
}

/* ---- pipes between parent and peer ---- */

static inline void t_pipe(int fds[2])
{
	CHECK(pipe2(fds, O_CLOEXEC) == 0);
}

static inline void t_put_u64(int fd, uint64_t v)
{
	CHECK(write(fd, &v, sizeof(v)) == (ssize_t)sizeof(v));
}

/* Reads one u64 within timeout_ms: 0, or -ETIMEDOUT, or -EPIPE when the writer closed. */
static inline int t_get_u64(int fd, uint64_t *v, long timeout_ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	ssize_t n;
	int r;

	do
		r = poll(&p, 1, (int)timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ETIMEDOUT;
	do
		n = read(fd, v, sizeof(*v));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*v) ? 0 : -EPIPE;
}

/* ---- the raw bytes of a channel, for poking corrupt values ---- */

struct t_map {
	uint8_t *base;
	size_t size;
};

/* Maps the whole object /dev/shm/shmchan.<name> read-write (a separate mapping, no locks taken). */
static inline struct t_map t_map_object(const char *name)
{
	char shm[300];
	struct t_map m;
	struct stat st;
	int fd;

	snprintf(shm, sizeof(shm), "/shmchan.%s", name);
	fd = shm_open(shm, O_RDWR, 0);
	CHECK(fd >= 0);
	CHECK(fstat(fd, &st) == 0 && st.st_size > 0);
	m.size = (size_t)st.st_size;
	m.base = mmap(NULL, m.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m.base != MAP_FAILED);
	close(fd);
	return m;
}

static inline void t_unmap(struct t_map *m)
{
	if (m->base)
		munmap(m->base, m->size);
	m->base = NULL;
}

static inline uint64_t t_get64(const struct t_map *m, size_t off)
{
	return __atomic_load_n((const uint64_t *)(const void *)(m->base + off), __ATOMIC_SEQ_CST);
}
static inline void t_put64(const struct t_map *m, size_t off, uint64_t v)
{
	__atomic_store_n((uint64_t *)(void *)(m->base + off), v, __ATOMIC_SEQ_CST);
}
static inline uint32_t t_get32(const struct t_map *m, size_t off)
{
	return __atomic_load_n((const uint32_t *)(const void *)(m->base + off), __ATOMIC_SEQ_CST);
}
static inline void t_put32(const struct t_map *m, size_t off, uint32_t v)
{
	__atomic_store_n((uint32_t *)(void *)(m->base + off), v, __ATOMIC_SEQ_CST);
}
static inline uint16_t t_get16(const struct t_map *m, size_t off)
{
	return __atomic_load_n((const uint16_t *)(const void *)(m->base + off), __ATOMIC_SEQ_CST);
}
static inline void t_put16(const struct t_map *m, size_t off, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)(m->base + off), v, __ATOMIC_SEQ_CST);
}

/* Whether a path exists (stat succeeds). */
static inline int t_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static inline struct shmchan_config t_config(uint64_t slot_size, uint32_t capacity)
{
	struct shmchan_config c;
	memset(&c, 0, sizeof(c));
	c.slot_size = slot_size;
	c.capacity = capacity;
	return c;
}

#endif
