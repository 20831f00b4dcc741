/* SPDX-License-Identifier: MIT */
/* Helpers shared by the libFuzzer harnesses: checks that abort (libFuzzer saves the input) and shm names. */
#ifndef SHMCHAN_FUZZUTIL_H
#define SHMCHAN_FUZZUTIL_H

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                                      \
	do {                                                                                  \
		if (!(cond)) {                                                                \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                              \
		}                                                                             \
	} while (0)

#define FUZZ_CHECK_MSG(cond, ...)                                                                     \
	do {                                                                                          \
		if (!(cond)) {                                                                        \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);        \
			fprintf(stderr, __VA_ARGS__);                                                 \
			fputc('\n', stderr);                                                          \
			abort();                                                                      \
		}                                                                                     \
	} while (0)

/*
 * Channel names of a fuzzing process are "fuzz-<tag>-<pid>": no two live processes share one. A
 * harness that crashes cannot clean up, so each one first removes the objects of its tag whose
 * process is gone.
 */
static inline void fuzz_remove_orphans(const char *tag)
{
	char prefix[64], path[300];
	struct dirent *e;
	DIR *d;

	snprintf(prefix, sizeof(prefix), "shmchan.fuzz-%s-", tag);
	d = opendir("/dev/shm");
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(prefix);
		if (strncmp(e->d_name, prefix, n) != 0)
			continue;
		long pid = strtol(e->d_name + n, NULL, 10);
		if (pid > 0 && kill((pid_t)pid, 0) != 0) {
			snprintf(path, sizeof(path), "/%s", e->d_name);
			(void)shm_unlink(path);
		}
	}
	closedir(d);
}

#endif
