/* SPDX-License-Identifier: MIT */
/* Private state of channel, writer and reader handles, and the helpers the .c files share. */
#ifndef SHMCHAN_INTERNAL_H
#define SHMCHAN_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "atomic.h"
#include "layout.h"
#include "shmchan.h"

/*
 * 100 us: longer than the peer's futex wake-up (about 57 us one way on a VM). With a shorter spin a
 * ping-pong falls into a state where both sides sleep and every message costs a wake-up (about
 * 114 us round trip here instead of about 2 us).
 */
#define SHMCHAN_DEFAULT_SPIN_NS 100000
#define SHMCHAN_SLICE_NS 100000000    /* 100 ms: how often a sleeper checks that its peer lives */
/*
 * The timeout of the try calls (shmchan_try_reserve, shmchan_try_peek_batch): no wait, no peer check,
 * no statistics. Public calls turn every negative timeout into -1, so callers can never pass it.
 */
#define SHMCHAN_TRY_NS INT64_MIN

/* Geometry read once from the header, validated, and then the only copy this process trusts. */
struct shmchan_geom {
	uint64_t slot_size;
	uint64_t slot_stride;
	uint64_t lens_offset;
	uint64_t descriptor_offset;
	uint64_t descriptor_size;
	uint64_t data_offset;
	uint64_t total_size;
	uint64_t created_ns;
	uint32_t capacity;
	uint32_t mask;
	uint32_t slot_align;
	uint32_t flags;
	uint32_t creator_pid;
	uint16_t version_major, version_minor;
	uint32_t kind;        /* enum shmchan_kind */
	uint32_t max_readers; /* BROADCAST */
	uint32_t policy;      /* BROADCAST */
	uint64_t readers_offset;
};

/* Where a segment lives. */
enum shmchan_backing {
	SHMCHAN_BACKING_SHM = 0,   /* a named POSIX shared-memory object */
	SHMCHAN_BACKING_FILE = 1,  /* a regular file */
	SHMCHAN_BACKING_MEMFD = 2, /* an anonymous sealed memfd, shared by passing its fd */
};

struct shmchan_channel {
	int fd;
	int is_creator;
	int backing; /* enum shmchan_backing */
	int poisoned;
	char *name; /* shm object name ("/shmchan.x"), file path, or "memfd:shmchan" */
	uint8_t *base;
	struct shmchan_header *hdr;
	_Atomic uint64_t *lens;              /* SPSC */
	struct shmchan_slot_meta *meta;      /* BROADCAST, STATE */
	struct shmchan_reader_place *places; /* BROADCAST */
	uint8_t *data;
	struct shmchan_geom g;
	int guard;              /* slot in the SIGBUS guard table, or -1 (unguarded: sealed, or table full) */
	int inherited;          /* a copy made by fork(): its descriptor is closed, its locks are the parent's */
	_Atomic uint32_t interrupted; /* shmchan_interrupt: every wait on this handle ends with -ECANCELED */
	_Atomic uint64_t polite_ns;   /* shmchan_polite_after_ns() + 1 once known (0: not looked up yet) */
	shmchan_writer *writer; /* this handle's writer, if attached */
	shmchan_reader *reader;
	char diag[256];
};

struct shmchan_writer {
	shmchan_channel *ch;
	uint64_t head;        /* private truth: the writer owns head */
	uint64_t cached_tail; /* last tail seen (broadcast: the floor); refreshed only when the ring looks full */
	uint64_t scan_seq;    /* broadcast: private copy of the header's scan_seq */
	uint64_t *dead_gen;   /* broadcast: per place, generation last found dead (+1; 0 = none) */
	uint64_t reserved;    /* bytes of the open reservation, or UINT64_MAX when none */
	uint64_t messages, bytes, full, aborts;
	uint32_t wake_seq; /* private copy of head_wake */
	int continuing;    /* the next reserve continues a wait: do not count it again */
	int ended;         /* shmchan_writer_end: the stream is over, the writer stays attached */
	_Atomic uint32_t interrupted; /* shmchan_writer_interrupt: its waits end with -ECANCELED */
	int64_t spin_ns;
	int64_t polite_ns; /* spin this long before also yielding the CPU between polls */
};

struct shmchan_reader {
	shmchan_channel *ch;
	uint64_t tail;        /* private truth: the reader owns tail */
	uint64_t read_pos;    /* next position to peek; tail <= read_pos <= head */
	uint64_t cached_head; /* last head seen; refreshed only when the ring looks empty */
	uint8_t *released;    /* per slot: peeked and released, waiting for earlier ones */
	uint64_t *taken_len;  /* per slot: length of the message peeked from it */
	uint64_t messages, bytes, empty;
	uint64_t lost;                      /* broadcast: lost to lapping */
	struct shmchan_reader_place *place; /* broadcast: our reader place, else NULL */
	uint32_t place_index;
	uint64_t orphan_lo, orphan_hi; /* broadcast: taken, then skipped past when lapped: [lo, hi) */
	uint32_t wake_seq; /* private copy of tail_wake */
	int continuing;    /* the next peek continues a wait: do not count it again */
	int64_t spin_ns;
	int64_t polite_ns; /* spin this long before also yielding the CPU between polls */
};

/* diag.c-style helper (error.c) */
void shmchan_diagf(struct shmchan_diag *diag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int shmchan_poison(shmchan_channel *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* validate.c */
int shmchan_geometry(const struct shmchan_config *cfg, struct shmchan_geom *g);
int shmchan_validate_header(const struct shmchan_header *h, uint64_t file_size,
			    struct shmchan_geom *g, struct shmchan_diag *diag);

/* wait.c */
int64_t shmchan_now_ns(void);
/* now + timeout, saturating: a negative or huge timeout gives INT64_MAX (never). */
int64_t shmchan_deadline(int64_t now, int64_t timeout_ns);
int shmchan_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns);
void shmchan_futex_wake(_Atomic uint32_t *word);
void shmchan_futex_wake_all(_Atomic uint32_t *word);

/* segment.c, shared with sealed.c */
int shmchan_init_segment(int fd, char *name, int backing, const struct shmchan_geom *g, uint32_t mode,
			 const void *descriptor, shmchan_channel **out, struct shmchan_diag *diag);
int shmchan_attach_segment(int fd, char *name, int backing, int64_t timeout_ns, uint32_t flags,
			   shmchan_channel **out, struct shmchan_diag *diag);
uint64_t shmchan_page_size(void);

/* guard.c */
int shmchan_guard_register(const void *base, uint64_t size);
void shmchan_guard_unregister(int slot);
int shmchan_guard_tripped(int slot);
/* -SHMCHAN_ECORRUPT (poisoning the handle) if a peer truncated the object under us, else 0. */
int shmchan_check_truncated(shmchan_channel *ch);

/* ring.c: waiting for a shared position to change (spin, then futex slices, checking the peer) */
struct shmchan_waiter {
	shmchan_channel *ch;
	const _Atomic uint64_t *watched; /* head (readers, state waiters) or tail (SPSC writer) */
	uint64_t stale;                  /* the value meaning "not yet" */
	_Atomic uint32_t *wake_word;     /* the peer's event count */
	_Atomic uint32_t *my_flag;       /* reader_waiting or writer_waiting */
	int peer_is_writer;              /* whose liveness a sleeper checks */
	int counted;       /* several sleepers share my_flag: it counts them (add, subtract) */
	int ends_on_close; /* the writer closing ends the wait (-SHMCHAN_EENDED) */
	int64_t spin_ns;
	int64_t polite_ns;
	const _Atomic uint32_t *cancel; /* a writer's own interrupt flag, or NULL */
};
int shmchan_wait_change(const struct shmchan_waiter *wt, int64_t timeout_ns, uint64_t *seen);
/* ring.c, reader side, shared by both ring kinds */
shmchan_reader *shmchan_reader_new(shmchan_channel *ch);
void shmchan_reader_free(shmchan_reader *r);
int shmchan_ensure_available(shmchan_reader *r, int64_t timeout_ns);
/* Whether shmchan_interrupt was called on the handle (a relaxed load: a flag of this process). */
static inline int shmchan_interrupted(const shmchan_channel *ch)
{
	return shmchan_read_once32(&ch->interrupted) != 0;
}
/* shmchan_polite_after_ns() of this handle's process, looked up once (a system call). */
int64_t shmchan_channel_polite_ns(shmchan_channel *ch);
int shmchan_accept_head(shmchan_reader *r, uint64_t head);

/* bcast.c: the BROADCAST and STATE kinds behind the public calls of ring.c */
int shmchan_bc_writer_init(shmchan_writer *w);
void shmchan_bc_writer_close(shmchan_writer *w);
int shmchan_bc_reserve(shmchan_writer *w, uint64_t nbytes, int64_t timeout_ns, void **data, uint32_t *slot);
int shmchan_bc_commit(shmchan_writer *w, uint64_t nbytes);
int shmchan_bc_reader_attach(shmchan_channel *ch, uint32_t flags, shmchan_reader **out);
void shmchan_bc_reader_close(shmchan_reader *r);
int shmchan_bc_place_alive(const shmchan_channel *ch, uint32_t i);
int shmchan_bc_peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max, int64_t timeout_ns);
int shmchan_bc_release(shmchan_reader *r, uint64_t pos);
int shmchan_bc_check(shmchan_reader *r, uint64_t pos);
int shmchan_bc_recv(shmchan_reader *r, void *buf, uint64_t cap, uint64_t *len, int64_t timeout_ns);
int shmchan_bc_inspect(shmchan_channel *ch, uint64_t pos, void *buf, uint64_t cap, uint64_t *len, uint64_t *first,
		       uint64_t *end);
int shmchan_st_reserve(shmchan_writer *w, uint64_t nbytes, void **data, uint32_t *slot);
int shmchan_st_commit(shmchan_writer *w, uint64_t nbytes);
/* ring.c helpers shared with bcast.c */
int64_t shmchan_polite_after_ns(void);
void shmchan_notify(_Atomic uint32_t *wake_word, uint32_t *seq, _Atomic uint32_t *peer_flag, int all);
void shmchan_sync_slot(shmchan_channel *ch, uint32_t s, uint64_t nbytes);
void shmchan_sync_control(shmchan_channel *ch);
/* Whether commits msync at all (file-backed channels with an "async" or "sync" policy): checked
   inline so that the common case costs no call. */
static inline int shmchan_syncs_commits(const shmchan_channel *ch)
{
	uint32_t policy = ch->g.flags & SHMCHAN_FLAG_MSYNC_MASK;
	return policy == SHMCHAN_MSYNC_ASYNC || policy == SHMCHAN_MSYNC_SYNC;
}

/* liveness.c */
int shmchan_lock_byte(int fd, int offset, int exclusive);
void shmchan_unlock_byte(int fd, int offset);
int shmchan_byte_locked(int fd, int offset);
int shmchan_peer_alive(const shmchan_channel *ch, int writer_side);

#endif
