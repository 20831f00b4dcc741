/* SPDX-License-Identifier: MIT */
/* The core's private interfaces, by concern: the handles, the operations of a kind, shared helpers. */
#ifndef SHMCHAN_INTERNAL_H
#define SHMCHAN_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "atomic.h"
#include "layout.h"
#include "shmchan.h"

/*
 * Layers (each .c file calls only into the layers below it; tests/test_c_lint.py checks that the
 * file-level call graph has no cycle and that only channel.c reaches more than one kind):
 *
 *   channel.c                       every public entry that depends on the kind: checks its
 *                                   arguments once, then calls the kind's operations (ch->ops)
 *   spsc.c  bcast.c  board.c        one kind each, behind a struct shmchan_kind_ops
 *   writer.c  reader.c              the writer and reader bookkeeping the kinds share
 *   wait.c                          the one wait loop, and the wake-ups
 *   segment.c  sealed.c  liveness.c validate.c  guard.c  error.c  sys.c
 *                                   mapping, naming, locks, checks, diagnostics, the platform
 */

/* ==== Tuning ==== */

/*
 * 100 us: longer than the peer's futex wake-up (about 57 us one way on a VM). With a shorter spin a
 * ping-pong falls into a state where both sides sleep and every message costs a wake-up (about
 * 114 us round trip here instead of about 2 us).
 */
#define SHMCHAN_DEFAULT_SPIN_NS 100000
#define SHMCHAN_SLICE_NS 100000000 /* 100 ms: how often a sleeper checks that its peer lives */
#define SHMCHAN_NO_RESERVATION UINT64_MAX
/*
 * BROADCAST and STATE positions (versions) stay below 2^63: 2^63 messages take centuries at a
 * billion a second. A head at or above it was written by a broken or hostile peer; taken as it is,
 * a slot's seq (position + 1) would meet SHMCHAN_SEQ_WRITING and then 0 ("never written"), and a
 * board's next version would wrap to 0 ("no value"). Writers and readers refuse it at attach.
 */
#define SHMCHAN_MAX_POSITION (UINT64_C(1) << 63)
/*
 * The timeout of the try calls (shmchan_try_reserve, shmchan_try_peek_batch): no wait, no peer check,
 * no statistics. Public calls turn every negative timeout into -1, so callers can never pass it.
 */
#define SHMCHAN_TRY_NS INT64_MIN

/* ==== Handles ==== */

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

struct shmchan_kind_ops;

struct shmchan_channel {
	const struct shmchan_kind_ops *ops; /* the operations of g.kind (set once the segment is mapped) */
	int fd;
	int is_creator;
	int backing; /* enum shmchan_backing */
	int poisoned;
	char *name; /* shm object name ("/shmchan.x"), file path, or "memfd:shmchan" */
	uint8_t *base;
	struct shmchan_header *hdr;
	_Atomic uint64_t *lens;              /* the slot table as lengths (SPSC) */
	struct shmchan_slot_meta *meta;      /* the slot table as {seq, len} (BROADCAST, STATE) */
	struct shmchan_reader_place *places; /* BROADCAST */
	uint8_t *data;
	struct shmchan_geom g;
	int guard;              /* slot in the SIGBUS guard table, or -1 (unguarded: sealed, or the guard is off) */
	/* that slot's tripped flag (a constant 0 when unguarded): table chunks are never freed and the
	   slot is this handle's until it closes, so every operation checks it with one load */
	const _Atomic uint32_t *tripped;
	int slots_writable;     /* this handle maps the slots read-write (a writer attached to it) */
	/* counted sleepers (threads) of this handle; the first takes the sleepers' lock byte, the last
	   drops it (an OFD lock belongs to the handle's open file description, not to a thread) */
	pthread_mutex_t sleep_mu;
	int local_sleepers;
	int inherited;          /* a copy made by fork(): its descriptor is closed, its locks are the parent's */
	_Atomic uint32_t interrupted; /* shmchan_interrupt: every wait on this handle ends with -ECANCELED */
	_Atomic uint64_t polite_ns;   /* shmchan_polite_after_ns() + 1 once known (0: not looked up yet) */
	shmchan_writer *writer; /* this handle's writer, if attached */
	shmchan_reader *reader;
	char diag[256];
};

/* A reader place whose owner the writer found dead, in the generation it had then. A separate flag,
   not a reserved generation: the generation is the reader's to write, and every value is possible. */
struct shmchan_dead_place {
	uint64_t gen;
	int known;
};

struct shmchan_writer {
	shmchan_channel *ch;
	uint64_t head;        /* private truth: the writer owns head */
	uint64_t cached_tail; /* last tail seen (broadcast: the floor); refreshed only when the ring looks full */
	uint64_t scan_seq;    /* broadcast: private copy of the header's scan_seq */
	struct shmchan_dead_place *dead; /* broadcast: per place, the generation last found dead, if any */
	uint64_t reserved;    /* bytes of the open reservation, or SHMCHAN_NO_RESERVATION */
	uint32_t slot;        /* the slot of the open reservation */
	uint64_t messages, bytes, full, aborts;
	uint32_t wake_seq; /* private copy of head_wake */
	uint32_t futile_wakes; /* commits in a row whose wake-up found no sleeper although some were counted */
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
	_Atomic uint64_t *empty_count; /* where `empty` is published (the header, or the reader place) */
	int may_be_lapped;             /* the writer may run more than capacity ahead (broadcast, overwrite) */
	uint64_t lost;                 /* broadcast: lost to lapping */
	struct shmchan_reader_place *place; /* broadcast: our reader place, else NULL */
	uint32_t place_index;
	uint64_t orphan_lo, orphan_hi; /* broadcast: taken, then skipped past when lapped: [lo, hi) */
	uint32_t wake_seq; /* private copy of tail_wake */
	int continuing;    /* the next peek continues a wait: do not count it again */
	int64_t spin_ns;
	int64_t polite_ns; /* spin this long before also yielding the CPU between polls */
};

/* ==== The operations of a kind ==== */

/*
 * One table per kind (shmchan_spsc_ops, shmchan_bcast_ops, shmchan_board_ops); channel.c picks it
 * by the validated kind and calls it after checking the public arguments, so an operation may rely
 * on them (non-NULL handles and pointers, a live reservation for commit, ...). NULL entries: the
 * kind has no such thing (a board has no reader handle and no reader places).
 */
struct shmchan_kind_ops {
	const char *name;
	/* Readers count themselves in reader_waiting (several may sleep on head_wake) and a wake-up
	   wakes all of them; otherwise reader_waiting is the one reader's flag. */
	int counted_sleepers;

	/* The writer: after its lock is taken and before it is announced; when its handle goes (frees
	   what writer_attach allocated, touching no shared memory: also for an inherited handle). */
	int (*writer_attach)(shmchan_writer *w);
	void (*writer_close)(shmchan_writer *w);
	/* Makes the next slot ready for the writer, waiting if need be: the slot index, or -errno
	   (timeout SHMCHAN_TRY_NS: -EAGAIN at once when it would wait, counting nothing). */
	int (*reserve)(shmchan_writer *w, int64_t timeout_ns, int continuing);
	/* Publishes the reservation (w->slot) with nbytes (<= what was reserved). */
	int (*commit)(shmchan_writer *w, uint64_t nbytes);

	/* A reader handle (NULL when the kind has none). The channel has no reader yet. */
	int (*reader_attach)(shmchan_channel *ch, uint32_t flags, shmchan_reader **out);
	void (*reader_close)(shmchan_reader *r);
	int (*peek_batch)(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max, int64_t timeout_ns);
	int (*release)(shmchan_reader *r, uint64_t pos);
	int (*check)(shmchan_reader *r, uint64_t pos);

	/* Any handle. */
	int (*inspect)(shmchan_channel *ch, uint64_t pos, void *buf, uint64_t cap, uint64_t *len, uint64_t *first,
		       uint64_t *end);
	/* Amends the snapshot channel.c takes of the header's counters (NULL: it is right as it is). */
	void (*stats)(const shmchan_channel *ch, struct shmchan_stats *out);
	int (*places)(const shmchan_channel *ch, struct shmchan_place_info *out, uint32_t max);
	int (*state_read)(shmchan_channel *ch, void *buf, uint64_t cap, uint64_t *len, uint64_t *version);
	uint64_t (*state_version)(const shmchan_channel *ch);
	int (*state_wait)(shmchan_channel *ch, uint64_t version, int64_t timeout_ns, uint64_t *now_version);
};

extern const struct shmchan_kind_ops shmchan_spsc_ops;
extern const struct shmchan_kind_ops shmchan_bcast_ops;
extern const struct shmchan_kind_ops shmchan_board_ops;

/* ==== The platform (sys.c) ==== */

int64_t shmchan_now_ns(void); /* CLOCK_MONOTONIC */
/* now + timeout, saturating: a negative or huge timeout gives INT64_MAX (never). */
int64_t shmchan_deadline(int64_t now, int64_t timeout_ns);
uint64_t shmchan_page_size(void);
/* How long a spinning waiter polls before it also yields the CPU between polls. */
int64_t shmchan_polite_after_ns(void);
int shmchan_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns);
void shmchan_futex_wake(_Atomic uint32_t *word);
int shmchan_futex_wake_all(_Atomic uint32_t *word); /* how many it woke, or -1 */
/* msync of [start, start + len), widened to whole pages. */
void shmchan_msync_range(uint8_t *start, uint64_t len, int flags);
/*
 * Naps that never miss a signal. Between shmchan_signals_hold (which blocks every asynchronous
 * signal, and saves the caller's mask in *old) and shmchan_signals_restore, a signal stays pending
 * until the next shmchan_nap, which sleeps with the caller's mask (ppoll's atomic swap) and then
 * returns -EINTR. A plain nanosleep misses a signal handled between two naps.
 */
void shmchan_signals_hold(sigset_t *old);
void shmchan_signals_restore(const sigset_t *old);
int shmchan_nap(int64_t ns, const sigset_t *old); /* 0, or -EINTR: a signal came */

/* ==== Waiting and waking (wait.c) ==== */

/*
 * What a blocked call waits for. It spins for spin_ns, then sleeps in slices of at most
 * SHMCHAN_SLICE_NS on the futex wake_word, with my_flag (or, when counted, a count of sleepers)
 * saying that it sleeps.
 */
struct shmchan_waiter {
	shmchan_channel *ch;
	/* The wait ends when the watched position differs from `stale` (*seen gets the new value)... */
	const _Atomic uint64_t *watched;
	uint64_t stale;
	/* ...or, when `ready` is set, when ready(arg) returns 1 (< 0 ends the wait with that error). */
	int (*ready)(void *arg);
	/* Whether the wait can still end: called before the first sleep and after every slice that
	   timed out. 0 sleeps on, > 0 looks again at once (it freed something), < 0 ends the wait
	   (-SHMCHAN_EPEERDEAD). NULL: nothing to watch. */
	int (*watch_peer)(void *arg);
	void *arg;
	_Atomic uint32_t *wake_word; /* the peer's event count */
	_Atomic uint32_t *my_flag;   /* reader_waiting or writer_waiting */
	int counted;       /* several sleepers share my_flag: it counts them (add, subtract) */
	int ends_on_close; /* the writer closing ends the wait (-SHMCHAN_EENDED) */
	int once;          /* return 0 after the first wake-up, whether or not anything changed */
	int64_t spin_ns;
	int64_t polite_ns;
	const _Atomic uint32_t *cancel; /* a writer's own interrupt flag, or NULL (the handle's is always
					   looked at) */
};
/* THE wait loop: every blocking call of the core goes through it. 0 (ready), -EAGAIN (timeout 0),
   -ETIMEDOUT, -EINTR, -ECANCELED (shmchan_interrupt), -SHMCHAN_EENDED, or what `ready` or
   `watch_peer` returned. */
int shmchan_wait(const struct shmchan_waiter *wt, int64_t timeout_ns, uint64_t *seen);
/* Whether shmchan_interrupt was called on the handle (a relaxed load: a flag of this process). */
static inline int shmchan_interrupted(const shmchan_channel *ch)
{
	return shmchan_read_once32(&ch->interrupted) != 0;
}
/* shmchan_polite_after_ns() of this handle's process, looked up once (a system call); any thread. */
int64_t shmchan_channel_polite_ns(shmchan_channel *ch);
/* Bumps this side's event count and wakes the peer (every sleeper, when `all`) if it sleeps: how
   many the wake-up woke, or -1 when the flag said nobody sleeps (no system call). */
int shmchan_notify(_Atomic uint32_t *wake_word, uint32_t *seq, _Atomic uint32_t *peer_flag, int all);
/* Wake-ups in a row that find nobody asleep while readers are counted before the writer looks for
   a count left by dead sleepers. */
#define SHMCHAN_FUTILE_WAKES 4
/* Counted sleepers (BROADCAST, STATE): if no live sleeper of another handle is counted (the
   sleepers' lock byte can be write-locked) and none of this handle, clears what dead ones left in
   reader_waiting. 1 when it cleared something. */
int shmchan_repair_sleepers(shmchan_channel *ch);
/* Bumps an event count several processes bump (an add, not a store of a private copy), and wakes
   one sleeper. */
void shmchan_notify_shared(_Atomic uint32_t *wake_word);

/* ==== Liveness (liveness.c) ==== */

int shmchan_lock_byte(int fd, int offset, int exclusive);
/* A shared lock on the byte, waiting while another holds it exclusively: 0, -EINTR or -errno. */
int shmchan_lock_byte_shared_wait(int fd, int offset);
void shmchan_unlock_byte(int fd, int offset);
int shmchan_byte_locked(int fd, int offset);
int shmchan_peer_alive(const shmchan_channel *ch, int writer_side);
int shmchan_place_alive(const shmchan_channel *ch, uint32_t i);
/* Announces this handle as the writer (or reader): generation, pid, then state ATTACHED (L0). */
void shmchan_peer_announce(shmchan_channel *ch, int writer_side);
/* Marks the writer (or reader) closed (L0); the caller then drops its lock. */
void shmchan_peer_leave(shmchan_channel *ch, int writer_side);
/* For shmchan_waiter.watch_peer (arg: the channel): -SHMCHAN_EPEERDEAD when that side died. */
int shmchan_watch_writer(void *ch);
int shmchan_watch_reader(void *ch);

/* ==== Segments (segment.c, sealed.c) ==== */

/* Each returns a mapped channel without its operations (channel.c gives it those); *out is NULL. */
int shmchan_segment_create(const char *name, const struct shmchan_config *cfg, shmchan_channel **out,
			   struct shmchan_diag *diag);
int shmchan_segment_create_file(const char *path, const struct shmchan_config *cfg, shmchan_channel **out,
				struct shmchan_diag *diag);
int shmchan_segment_open(const char *name, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
			 struct shmchan_diag *diag);
int shmchan_segment_open_file(const char *path, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
			      struct shmchan_diag *diag);
int shmchan_segment_init(int fd, char *name, int backing, const struct shmchan_geom *g, uint32_t mode,
			 const void *descriptor, shmchan_channel **out, struct shmchan_diag *diag);
int shmchan_segment_attach(int fd, char *name, int backing, int64_t timeout_ns, uint32_t flags,
			   shmchan_channel **out, struct shmchan_diag *diag);
/* Maps this handle's slot region read-only (0) or read-write (1): 0 or -errno. */
int shmchan_segment_protect_slots(shmchan_channel *ch, int writable);
/* Unmaps and closes a channel that has no writer or reader attached (an inherited one: only unmaps). */
void shmchan_segment_close(shmchan_channel *ch);
int shmchan_memfd_create(const struct shmchan_config *cfg, shmchan_channel **out, struct shmchan_diag *diag);
int shmchan_memfd_open(int fd, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
		       struct shmchan_diag *diag);
int shmchan_memfd_connect(const char *path, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
			  struct shmchan_diag *diag);

/* ==== Validation (validate.c) ==== */

int shmchan_geometry(const struct shmchan_config *cfg, struct shmchan_geom *g);
int shmchan_validate_header(const struct shmchan_header *h, uint64_t file_size,
			    struct shmchan_geom *g, struct shmchan_diag *diag);

/* ==== The SIGBUS guard (guard.c) ==== */

int shmchan_guard_register(const void *base, uint64_t size);
void shmchan_guard_unregister(int slot);
/* The tripped flag of a slot (of a constant 0 for slot -1), for shmchan_channel.tripped. */
const _Atomic uint32_t *shmchan_guard_flag(int slot);
/* Poisons the handle because the guard tripped: -SHMCHAN_ECORRUPT. */
int shmchan_truncated(shmchan_channel *ch);
/* -SHMCHAN_ECORRUPT (poisoning the handle) if a peer truncated the object under us, else 0. On
   every operation's path: inline, one load. */
static inline int shmchan_check_truncated(shmchan_channel *ch)
{
	/* (S4) acquire: pairs with (S3) in the handler */
	if (!shmchan_load_acquire32(ch->tripped))
		return 0;
	return shmchan_truncated(ch);
}

/* ==== Diagnostics (error.c) ==== */

void shmchan_diagf(struct shmchan_diag *diag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Says why the last call on a handle failed without making it unusable (unless it is poisoned). */
void shmchan_note(shmchan_channel *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Marks the handle unusable, keeping the first sentence that says why; returns -SHMCHAN_ECORRUPT. */
int shmchan_poison(shmchan_channel *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ==== The writer side every kind shares (writer.c) ==== */

/* Takes the writer lock and makes a writer handle from the header (not announced yet). */
int shmchan_writer_open(shmchan_channel *ch, shmchan_writer **out);
/* Undoes shmchan_writer_open (an attach that failed). */
void shmchan_writer_discard(shmchan_writer *w);
void shmchan_writer_announce(shmchan_writer *w);
/* Marks the writer closed and wakes the readers (the stream ended); it stays attached (w->ended). */
void shmchan_writer_finish(shmchan_writer *w);
/* Drops the writer lock and frees w (after shmchan_writer_finish). */
void shmchan_writer_detach(shmchan_writer *w);
/* Frees a writer handle inherited across fork() without touching the channel (the parent's). */
void shmchan_writer_free(shmchan_writer *w);
void shmchan_writer_drop(shmchan_writer *w); /* drops the open reservation */
/* Moves head past the reservation and tells the readers: the end of every commit. */
int shmchan_publish(shmchan_writer *w, uint64_t nbytes);
/* The slot tables of {seq, len} (broadcast, board): stamps slot s as being written (M1) ... */
void shmchan_stamp_slot(shmchan_channel *ch, uint32_t s);
/* ... and publishes the reservation with length nbytes and sequence `seq` (M2), then head. */
int shmchan_publish_stamped(shmchan_writer *w, uint64_t nbytes, uint64_t seq);
/* The msync policy after a commit to slot s: the payload, before the position is published. */
void shmchan_sync_slot(shmchan_channel *ch, uint32_t s, uint64_t nbytes);

/* Whether commits msync at all (file-backed channels with an "async" or "sync" policy): checked
   inline so that the common case costs no call. */
static inline int shmchan_syncs_commits(const shmchan_channel *ch)
{
	uint32_t policy = ch->g.flags & SHMCHAN_FLAG_MSYNC_MASK;
	return policy == SHMCHAN_MSYNC_ASYNC || policy == SHMCHAN_MSYNC_SYNC;
}

static inline uint8_t *shmchan_slot_data(const shmchan_channel *ch, uint32_t s)
{
	return ch->data + (uint64_t)s * ch->g.slot_stride;
}

/* ==== The reader side (reader.c): the ring kinds' bookkeeping, a look at a stamped slot ==== */

/* A reader handle with its per-slot bookkeeping and default waiting, not attached yet. */
shmchan_reader *shmchan_reader_new(shmchan_channel *ch);
/* Frees a reader handle, detaching it from its channel handle. */
void shmchan_reader_free(shmchan_reader *r);
/* Checks a head loaded from the header, then caches it. */
int shmchan_accept_head(shmchan_reader *r, uint64_t head);
/* Makes sure at least one message is past read_pos, waiting for the writer if need be (timeout
   SHMCHAN_TRY_NS: -EAGAIN at once when it would wait, counting nothing and watching nobody). */
int shmchan_ensure_available(shmchan_reader *r, int64_t timeout_ns);
/* Marks outstanding position pos released and moves tail over the released run: how far it moved. */
uint64_t shmchan_reader_advance(shmchan_reader *r, uint64_t pos);

/* A look at slot s of a {seq, len} table (broadcast, board) without taking it: copies it if it
   holds sequence `want`. 0; -ESTALE when it holds another or was rewritten during the copy;
   -EMSGSIZE (*len set) when cap is short; -SHMCHAN_ECORRUPT (truncated). */
int shmchan_inspect_stamped(shmchan_channel *ch, uint32_t s, uint64_t want, void *buf, uint64_t cap, uint64_t *len);

/* Whether pos was taken and is not released yet (tail <= pos < read_pos, free-running). */
static inline int shmchan_outstanding(const shmchan_reader *r, uint64_t pos)
{
	return pos - r->tail < r->read_pos - r->tail && !r->released[pos & r->ch->g.mask];
}

#endif
