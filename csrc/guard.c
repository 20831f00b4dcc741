/* SPDX-License-Identifier: MIT */
/* SIGBUS guard: a peer that truncates a named channel poisons it instead of killing this process. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

/*
 * Touching a page of a MAP_SHARED mapping past the end of its file raises SIGBUS, which kills a
 * process (Python included). A peer can cause that by truncating a named channel. So every named
 * mapping is registered here, and a SIGBUS handler checks whether the faulting address lies in one:
 * if so it maps a private zero page over the faulting page (the access then completes, reading
 * zeros or writing into the void) and marks the channel, whose next operation fails with
 * SHMCHAN_ECORRUPT. Faults anywhere else go to the handler that was installed before ours (or
 * kill the process as they would have). SHMCHAN_NO_SIGBUS_GUARD=1 in the environment turns the
 * guard off for programs that manage SIGBUS themselves.
 *
 * The handler only reads the table with atomic loads; registration takes a mutex. A tripped flag
 * lives in the table entry, not in the channel, so a handler never touches freed memory.
 */

/*
 * The table grows by chunks of GUARD_CHUNK entries (mmap-ed, never freed, so the handler never
 * reads freed memory), up to GUARD_CHUNKS chunks: far more mappings than vm.max_map_count lets a
 * process have. A registration that cannot be made refuses the mapping (the caller unmaps): a
 * named mapping is never left unguarded while the guard is on.
 */
#define GUARD_CHUNK 1024
#define GUARD_CHUNKS 64

struct guard_entry {
	_Atomic uint64_t start, end; /* addresses; 0, 0 when free */
	_Atomic uint32_t tripped;
};

/* chunk addresses (0: not allocated yet), stored once each, in order */
static _Atomic uint64_t chunks[GUARD_CHUNKS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct sigaction previous;
static int installed;
static uint64_t page_mask;

static struct guard_entry *chunk_at(uint64_t addr)
{
	return (struct guard_entry *)(uintptr_t)addr;
}

static struct guard_entry *entry(int slot)
{
	/* (S6) acquire: the chunk's zeroed entries before its address; pairs with (S5) */
	return &chunk_at(shmchan_load_acquire64(&chunks[slot / GUARD_CHUNK]))[slot % GUARD_CHUNK];
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	const uint64_t a = (uint64_t)(uintptr_t)si->si_addr;

	for (int c = 0; si->si_code == BUS_ADRERR && c < GUARD_CHUNKS; c++) {
		/* (S6) acquire: pairs with (S5) */
		struct guard_entry *entries = chunk_at(shmchan_load_acquire64(&chunks[c]));
		if (!entries)
			break; /* chunks are added in order */
		for (int i = 0; i < GUARD_CHUNK; i++) {
			/* (S2) acquire: a set start implies its end; pairs with (S1) */
			uint64_t s = shmchan_load_acquire64(&entries[i].start);
			uint64_t e = shmchan_read_once64(&entries[i].end);
			if (s && a >= s && a < e) {
				void *page = (void *)(uintptr_t)(a & page_mask);
				if (mmap(page, ~page_mask + 1, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
					 -1, 0) != MAP_FAILED) {
					/* (S3) release: pairs with (S4) in shmchan_check_truncated (internal.h) */
					shmchan_store_release32(&entries[i].tripped, 1);
					return; /* the access is retried on the zero page */
				}
			}
		}
	}
	if (previous.sa_flags & SA_SIGINFO) {
		previous.sa_sigaction(sig, si, uc);
	} else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
		previous.sa_handler(sig);
	} else {
		/* as if we had never been here: the faulting access runs again and the default kills */
		signal(sig, SIG_DFL);
	}
}

static void install(void)
{
	struct sigaction sa;
	const char *off = getenv("SHMCHAN_NO_SIGBUS_GUARD");

	page_mask = ~((uint64_t)sysconf(_SC_PAGESIZE) - 1);
	if (off && *off && strcmp(off, "0") != 0)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, &previous) == 0)
		installed = 1;
}

int shmchan_guard_register(const void *base, uint64_t size)
{
	int slot = -EMFILE;

	pthread_once(&once, install);
	if (!installed)
		return -1; /* the guard is off: nothing to register */
	pthread_mutex_lock(&lock);
	for (int c = 0; c < GUARD_CHUNKS && slot < 0; c++) {
		struct guard_entry *entries = chunk_at(shmchan_read_once64(&chunks[c]));
		if (!entries) {
			/* the table is full so far: grow it (anonymous pages come zeroed: every entry free) */
			void *m = mmap(NULL, GUARD_CHUNK * sizeof(struct guard_entry), PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (m == MAP_FAILED) {
				slot = -ENOMEM;
				break;
			}
			entries = m;
			/* (S5) release: the zeroed chunk before its address; pairs with (S6) */
			shmchan_store_release64(&chunks[c], (uint64_t)(uintptr_t)m);
		}
		for (int i = 0; i < GUARD_CHUNK; i++) {
			if (shmchan_read_once64(&entries[i].start) == 0) {
				shmchan_write_once32(&entries[i].tripped, 0);
				shmchan_write_once64(&entries[i].end, (uint64_t)(uintptr_t)base + size);
				/* (S1) release: tripped and end before start makes the entry live; pairs with (S2) */
				shmchan_store_release64(&entries[i].start, (uint64_t)(uintptr_t)base);
				slot = c * GUARD_CHUNK + i;
				break;
			}
		}
	}
	pthread_mutex_unlock(&lock);
	/* -EMFILE: GUARD_CHUNKS * GUARD_CHUNK mappings already guarded; the caller refuses this one */
	return slot;
}

void shmchan_guard_unregister(int slot)
{
	struct guard_entry *e;

	if (slot < 0)
		return;
	pthread_mutex_lock(&lock);
	e = entry(slot);
	shmchan_write_once64(&e->start, 0);
	shmchan_write_once64(&e->end, 0);
	pthread_mutex_unlock(&lock);
}

const _Atomic uint32_t *shmchan_guard_flag(int slot)
{
	static const _Atomic uint32_t never; /* an unguarded mapping's flag: never set */

	return slot >= 0 ? &entry(slot)->tripped : &never;
}

int shmchan_truncated(shmchan_channel *ch)
{
	return shmchan_poison(ch, "the object was truncated by another process while mapped (SIGBUS caught)");
}
