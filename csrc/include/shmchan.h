/* SPDX-License-Identifier: MIT */
/* shmchan public C API: named shared-memory channels with a zero-copy ring of slots. */
#ifndef SHMCHAN_H
#define SHMCHAN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Conventions
 *   - Every function that can fail returns 0 (or a count) on success and a negative error code on
 *     failure: -errno for system errors, -SHMCHAN_E* for shmchan's own. shmchan_strerror() names
 *     both kinds.
 *   - Timeouts are in nanoseconds: < 0 waits forever, 0 never waits (-EAGAIN when it would have
 *     to), > 0 waits at most that long (-ETIMEDOUT). A signal ends a wait with -EINTR, and
 *     shmchan_interrupt ends it (and every later one on that handle) with -ECANCELED.
 *   - One channel has at most one writer and one reader at a time (single producer, single
 *     consumer); a second attach gets -EBUSY. A handle (channel, writer, reader) is used by one
 *     thread at a time. Handles are not inherited across fork(): open the channel in the child.
 *   - Kinds: a channel is one of three kinds, fixed at create (shmchan_config.kind):
 *       SPSC       one writer, one reader, lossless (the default);
 *       BROADCAST  one writer, up to max_readers readers that each see every message; the policy
 *                  says what a full ring does: BLOCK (the writer waits for the slowest live reader)
 *                  or OVERWRITE (the writer never waits; a reader it laps skips ahead and learns
 *                  how many messages it lost);
 *       STATE      a board holding one value (up to slot_size bytes) with a version: one writer
 *                  publishes, any number of handles read a private copy, never torn.
 *     The writer and reader calls below work on SPSC and BROADCAST channels alike; STATE channels
 *     take a writer (shmchan_reserve/commit or shmchan_send publish a new value) and are read with
 *     shmchan_state_read.
 */

enum shmchan_error {
	SHMCHAN_EBASE = 2000,
	SHMCHAN_EBADMAGIC = 2001, /* the object is not a shmchan channel */
	SHMCHAN_EVERSION = 2002,  /* incompatible layout version */
	SHMCHAN_ECORRUPT = 2003,  /* a shared field holds an impossible value; the handle is poisoned */
	SHMCHAN_EPEERDEAD = 2004, /* the peer died while attached (its liveness lock is gone) */
	SHMCHAN_ENOTINIT = 2005,  /* the creator has not finished (or died during) initialisation */
	SHMCHAN_EENDED = 2006,    /* the writer closed and every message was received */
	SHMCHAN_EPINNED = 2007,   /* every slot is held by this reader's unreleased messages */
	SHMCHAN_ENOREADERS = 2008, /* broadcast: every reader place is taken */
	SHMCHAN_ENOTREG = 2009,    /* the name holds no regular file (a FIFO, directory, socket, device, symlink) */
};

enum shmchan_kind {
	SHMCHAN_KIND_SPSC = 1,
	SHMCHAN_KIND_BROADCAST = 2,
	SHMCHAN_KIND_STATE = 3,
};

enum shmchan_policy {
	SHMCHAN_POLICY_BLOCK = 0,     /* broadcast: lossless, the writer waits for the slowest live reader */
	SHMCHAN_POLICY_OVERWRITE = 1, /* broadcast: the writer never waits; lapped readers lose messages */
};

enum shmchan_msync_policy {
	SHMCHAN_MSYNC_NONE = 0,     /* never msync (the only sensible choice for /dev/shm) */
	SHMCHAN_MSYNC_ASYNC = 1,    /* msync(MS_ASYNC) of the slot after each commit */
	SHMCHAN_MSYNC_SYNC = 2,     /* msync(MS_SYNC) of the slot after each commit */
	SHMCHAN_MSYNC_EXPLICIT = 3, /* only when shmchan_flush() is called */
};

struct shmchan_config {
	uint64_t slot_size;    /* bytes per message, 1 .. 2^40 */
	uint32_t capacity;     /* number of slots, a power of two, 1 .. 2^24 */
	uint32_t slot_align;   /* slot alignment, a power of two 8 .. 2 MiB; 0 = shmchan_default_slot_align() */
	uint32_t mode;         /* permission bits of the object; 0 = 0600 */
	uint32_t msync_policy; /* enum shmchan_msync_policy; only meaningful for file-backed channels */
	uint32_t descriptor_size; /* bytes of `descriptor`, 0 .. 64 KiB */
	const void *descriptor;   /* copied into the segment at create; immutable afterwards (may be NULL) */
	uint32_t kind;            /* enum shmchan_kind; 0 = SPSC */
	uint32_t max_readers;     /* BROADCAST: reader places, 1 .. 1024; 0 for the other kinds */
	uint32_t policy;          /* BROADCAST: enum shmchan_policy; 0 for the other kinds */
	uint32_t _reserved;       /* must be 0 */
};

/* Diagnostics: a human sentence explaining the last failure of the call that was given it. */
struct shmchan_diag {
	char message[256];
};

struct shmchan_info {
	uint16_t version_major, version_minor;
	uint32_t capacity;
	uint64_t slot_size;
	uint64_t slot_stride;
	uint32_t slot_align;
	uint32_t msync_policy;
	uint64_t data_offset;
	uint64_t total_size;
	uint64_t created_ns; /* CLOCK_REALTIME at creation */
	uint32_t creator_pid;
	int32_t is_creator;
	uint64_t descriptor_size;
	int32_t sealed; /* a sealed memfd channel (shmchan_create_sealed) */
	uint32_t kind;        /* enum shmchan_kind */
	uint32_t max_readers; /* BROADCAST: reader places */
	uint32_t policy;      /* BROADCAST: enum shmchan_policy */
	uint32_t _pad;
};

struct shmchan_stats {
	uint64_t head, tail;                            /* positions (messages committed / released) */
	uint64_t messages_written, bytes_written;       /* committed by writers */
	uint64_t full_waits, aborts;                    /* reserve found the ring full; aborted reservations */
	uint64_t messages_read, bytes_read;             /* released by readers */
	uint64_t empty_waits;                           /* peek found the ring empty */
	uint32_t writer_state, reader_state;            /* SHMCHAN_PEER_* values: 0 none, 1 attached, 2 closed */
	uint32_t writer_pid, reader_pid;                /* last attached pids (0 when none) */
	int32_t writer_alive, reader_alive;             /* liveness lock held right now */
};

/* A received message: valid until shmchan_release(pos). */
struct shmchan_msg {
	uint64_t pos;   /* position in the stream: 0, 1, 2, ... */
	uint64_t len;   /* payload length in bytes */
	uint32_t slot;  /* slot index */
	uint32_t lost;  /* BROADCAST/OVERWRITE: messages skipped just before this one because the writer
			   lapped this reader (saturates at UINT32_MAX); 0 otherwise */
	void *data;     /* payload, read-only for the reader */
};

/* One broadcast reader place, for monitoring (shmchan_reader_places). */
struct shmchan_place_info {
	uint32_t index;
	uint32_t state; /* SHMCHAN_PEER_*: 0 free, 1 attached, 2 closed (free) */
	uint32_t pid;
	int32_t alive; /* attached and its liveness lock is held */
	uint64_t cursor, messages, bytes, lost, empty_waits;
};

typedef struct shmchan_channel shmchan_channel;
typedef struct shmchan_writer shmchan_writer;
typedef struct shmchan_reader shmchan_reader;

/* ---- names, sizes and errors ---- */

/* 0 if `name` is a valid channel name: 1-247 of [A-Za-z0-9_.-], not starting with '.' or '-'. */
int shmchan_validate_name(const char *name);
/* The slot alignment a slot_align of 0 stands for: 64 (a cache line) for slots under 4096 bytes, so
   small messages pack densely, else 4096 (a page). */
uint32_t shmchan_default_slot_align(uint64_t slot_size);
/* Computes the segment size for a geometry, checking every limit and
   overflow. Pure computation: no system call. */
int shmchan_layout_size(const struct shmchan_config *cfg, uint64_t *total_size);
const char *shmchan_strerror(int err);
/* Versions stamped into this build. */
const char *shmchan_version(void);
int shmchan_layout_major(void);
int shmchan_layout_minor(void);

/* ---- segments ---- */

/* Creates the channel `name` (the object /dev/shm/shmchan.<name>); -EEXIST if it exists. */
int shmchan_create(const char *name, const struct shmchan_config *cfg, shmchan_channel **out,
		   struct shmchan_diag *diag);
/* Opens an existing channel, waiting up to timeout_ns for a creator still initialising it. */
int shmchan_open(const char *name, int64_t timeout_ns, shmchan_channel **out, struct shmchan_diag *diag);
/* Flags of shmchan_open_ex. By default open refuses an object owned by another user or writable by
   group or others (anyone who can write it can corrupt the channel); this flag allows it. */
#define SHMCHAN_OPEN_ALLOW_FOREIGN 1u
int shmchan_open_ex(const char *name, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
		    struct shmchan_diag *diag);
/* The same for a channel kept in a regular file (persistent; msync policies apply). */
int shmchan_create_file(const char *path, const struct shmchan_config *cfg, shmchan_channel **out,
			struct shmchan_diag *diag);
int shmchan_open_file(const char *path, int64_t timeout_ns, shmchan_channel **out, struct shmchan_diag *diag);
int shmchan_open_file_ex(const char *path, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
			 struct shmchan_diag *diag);
/* 1 when channel `name` is stale (no process holds it open: its creator and every peer are gone),
   0 when some process holds it (or it changed in the last 100 ms), or -errno (-ENOENT: no such). */
int shmchan_is_stale(const char *name);
/* Removes channel `name` only if it is stale: 0 removed, -EBUSY in use, -ENOENT absent. */
int shmchan_reclaim_stale(const char *name);
/*
 * Sealed channels. The segment is an anonymous memfd sealed against shrinking and growing, so no
 * peer can truncate it under a reader (which would crash the reader with SIGBUS). It has no name:
 * peers receive its file descriptor over a Unix socket (SCM_RIGHTS). Use it when peers are not
 * fully trusted, or in containers that share a socket but not /dev/shm.
 */
int shmchan_create_sealed(const struct shmchan_config *cfg, shmchan_channel **out, struct shmchan_diag *diag);
/* Attaches to a sealed channel from a file descriptor received from its creator. The descriptor is
   re-opened (this handle gets its own locks), so the caller still owns and closes `fd`. Refuses a
   descriptor that is not sealed against shrinking and growing, or that is sealed against writing
   (F_SEAL_WRITE, F_SEAL_FUTURE_WRITE: no peer could write the channel), with -EPERM and a diag
   naming the seal. */
int shmchan_open_fd(int fd, int64_t timeout_ns, uint32_t flags, shmchan_channel **out, struct shmchan_diag *diag);
/* The channel's file descriptor (to hand to peers); owned by the channel. */
int shmchan_channel_fd(const shmchan_channel *ch);
/* Sends the channel's descriptor over a connected Unix socket. */
int shmchan_send_fd(int sock, const shmchan_channel *ch);
/* Connects to a Unix socket at `path` where a creator serves a sealed channel, receives its
   descriptor and attaches (shmchan_open_fd), all within timeout_ns; connect(2) never blocks, even
   on a listener whose backlog is full. -EPROTO when the server answers anything but the byte 'S'
   with exactly one descriptor (diag says what it sent; every descriptor it sent is closed);
   -EPERM when the memfd is not sealed against resizing or is sealed against writing.
   `flags`: those of shmchan_open_ex, and SHMCHAN_CONNECT_EINTR, for a binding that runs its
   signal handlers, then calls again with the time left: a signal ends the exchange with -EINTR
   instead of being ridden out, and so does every 100 ms spent retrying a listener whose backlog
   is full (a signal caught between two tries interrupts nothing; no connection is held then). */
#define SHMCHAN_CONNECT_EINTR 2u
int shmchan_connect(const char *path, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
		    struct shmchan_diag *diag);

/* Detaches any writer/reader of this handle, unmaps and closes. Never unlinks. NULL is a no-op. */
void shmchan_close(shmchan_channel *ch);
/*
 * In a child process after fork(), for a handle the child inherited: gives up the descriptor it
 * shares with the parent, without unlocking anything the parent holds (the parent keeps its
 * writer, reader and liveness). The handle keeps only its mapping; make no call on it but
 * shmchan_close, which then unmaps and frees it without touching the channel.
 */
void shmchan_forget_inherited(shmchan_channel *ch);
/*
 * Ends every blocking call on this handle (reserve, send, peek, recv, waits), now and later, with
 * -ECANCELED: for a binding about to close a handle that other threads may be blocked on. A call
 * just about to sleep may miss the wake-up and sleep one slice (up to 100 ms): call it again
 * until those calls have returned. Non-blocking calls are not affected.
 */
void shmchan_interrupt(shmchan_channel *ch);
/* Removes the name (or file) of this channel; mappings stay valid until closed. */
int shmchan_channel_unlink(shmchan_channel *ch);
int shmchan_unlink(const char *name);
int shmchan_info(const shmchan_channel *ch, struct shmchan_info *out);
/* enum shmchan_kind of the channel. */
int shmchan_kind(const shmchan_channel *ch);
int shmchan_stats(const shmchan_channel *ch, struct shmchan_stats *out);
/* msync of the whole segment (MS_SYNC); for file-backed channels. */
int shmchan_flush(shmchan_channel *ch);
/* Base address of the mapping and the address of slot i (for bindings that wrap slots once). */
void *shmchan_slot_address(const shmchan_channel *ch, uint32_t slot);
/* Copies the channel's descriptor (given at create) into buf; -EMSGSIZE with *len set if cap is short. */
int shmchan_read_descriptor(const shmchan_channel *ch, void *buf, uint64_t cap, uint64_t *len);
/*
 * Looks at a message without taking it, for monitoring tools (no reader needs to be attached):
 * copies up to cap bytes of the message at position pos into buf and its length into *len.
 * Returns 0, -ENOENT when pos is not in the ring (already released, or not yet written: *first
 * and *end then tell the range [tail, head) that is), -ESTALE when the writer reused the slot
 * during the copy (discard buf), or -EMSGSIZE (message kept; *len set).
 */
int shmchan_inspect(shmchan_channel *ch, uint64_t pos, void *buf, uint64_t cap, uint64_t *len, uint64_t *first,
		    uint64_t *end);
/* A sentence about the corruption that poisoned this handle, else about the last call that left one
   (a broadcast join that timed out); "" when none. */
const char *shmchan_channel_diag(const shmchan_channel *ch);

/* ---- writer ---- */

int shmchan_writer_attach(shmchan_channel *ch, shmchan_writer **out);
/* Marks the writer closed (readers then see the end of the stream) and releases its lock. */
void shmchan_writer_close(shmchan_writer *w);
/* Ends the stream as shmchan_writer_close does (an open reservation is aborted; readers see the
   writer closed), but stays attached: no other writer can attach until shmchan_writer_close. For a
   binding whose user closed the writer while views of its slots are still alive. Reserving then
   fails with -EPIPE. */
void shmchan_writer_end(shmchan_writer *w);
/* The stream position the next commit publishes (messages committed on the channel so far). */
uint64_t shmchan_writer_position(const shmchan_writer *w);
/* Ends the writer's blocking calls (reserve, send), now and later, with -ECANCELED. The one call
   on a writer that another thread may make while one of its calls is blocked. */
void shmchan_writer_interrupt(shmchan_writer *w);
/* How long a blocked reserve (or peek, for the reader) spins before it sleeps (default 100 us). */
void shmchan_writer_set_spin(shmchan_writer *w, int64_t spin_ns);
/* The next blocking call continues a wait that ended with -ETIMEDOUT or -EINTR (a binding that
   waits in slices): the statistics count it as the same wait. */
void shmchan_writer_continue_wait(shmchan_writer *w);
/* Reserves the next slot for a message of nbytes (<= slot_size); waits while the ring is full. */
int shmchan_reserve(shmchan_writer *w, uint64_t nbytes, int64_t timeout_ns, void **data, uint32_t *slot);
/* Publishes the reserved slot with length nbytes (<= the reserved size). */
int shmchan_commit(shmchan_writer *w, uint64_t nbytes);
/* shmchan_reserve without waiting, for bindings that wait elsewhere: 0, or -EAGAIN at once when
   the ring is full, with no system call and no statistics (a blocking call that follows does the
   waiting, the peer checks and the counting). */
int shmchan_try_reserve(shmchan_writer *w, uint64_t nbytes, void **data, uint32_t *slot);
/* Drops the reservation; readers never see it. */
int shmchan_abort(shmchan_writer *w);
/* reserve + copy + commit. */
int shmchan_send(shmchan_writer *w, const char *data, uint64_t nbytes, int64_t timeout_ns);

/* ---- reader ---- */

int shmchan_reader_attach(shmchan_channel *ch, shmchan_reader **out);
/* Flags of shmchan_reader_attach_ex. */
#define SHMCHAN_START_LATEST 0u /* broadcast: start at the newest message already sent (if any) */
#define SHMCHAN_START_OLDEST 1u /* broadcast: start at the oldest message still in the ring */
/* As shmchan_reader_attach; on a BROADCAST channel takes a free reader place (-SHMCHAN_ENOREADERS when
   none is left) and starts where `flags` says. SPSC readers always continue where the last stopped. */
int shmchan_reader_attach_ex(shmchan_channel *ch, uint32_t flags, shmchan_reader **out);
void shmchan_reader_close(shmchan_reader *r);
void shmchan_reader_set_spin(shmchan_reader *r, int64_t spin_ns);
/* As shmchan_writer_continue_wait, for the next peek, peek_batch or recv. */
void shmchan_reader_continue_wait(shmchan_reader *r);
/* Takes the next message without releasing it. */
int shmchan_peek(shmchan_reader *r, int64_t timeout_ns, struct shmchan_msg *msg);
/* Takes up to max messages: waits for the first, returns how many (>= 1) are in msgs. If it meets
   corruption part-way it returns -SHMCHAN_ECORRUPT and the handle is poisoned (nothing taken in
   that call can be trusted or released). */
int shmchan_peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max, int64_t timeout_ns);
/* shmchan_peek_batch without waiting: the messages already there (>= 1), or -EAGAIN at once when
   there are none, with no system call and no statistics (see shmchan_try_reserve); other errors as
   shmchan_peek_batch, except that the end of the stream and a dead writer show as -EAGAIN. */
int shmchan_try_peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max);
/* Releases a message taken by peek (any order; slots go back to the writer in stream order). */
int shmchan_release(shmchan_reader *r, uint64_t pos);
/* peek + copy into buf (up to cap bytes; -EMSGSIZE, message kept, if it does not fit) + release. */
int shmchan_recv(shmchan_reader *r, void *buf, uint64_t cap, uint64_t *len, int64_t timeout_ns);
/* Messages taken by peek and not yet released. */
uint64_t shmchan_reader_outstanding(const shmchan_reader *r);
/* Whether an outstanding message is still intact: 0 yes, -ESTALE when a BROADCAST/OVERWRITE writer
   reused its slot since it was taken (anything read from it may be torn), -EINVAL when pos is not
   outstanding. Always 0 for SPSC and BROADCAST/BLOCK messages. shmchan_release performs the same
   check, releases the message either way, and returns -ESTALE when it was overwritten. */
int shmchan_check(shmchan_reader *r, uint64_t pos);
/* Waits until a message can be taken, without taking it: 0, or the errors of shmchan_peek. For
   bindings that wait on another thread (asyncio) and take the message on their own. */
int shmchan_wait_readable(shmchan_reader *r, int64_t timeout_ns);
/*
 * For bindings that wait on a helper thread (asyncio) while the handle stays with its owner: sleeps
 * until the channel's head differs from `pos`, a wake-up, or the timeout; touches no handle state
 * and reports nothing else, so the caller looks again with a non-blocking call on its own thread.
 * 0 (look again), -ETIMEDOUT or -EINTR. shmchan_wake_head wakes every such sleeper (and, spuriously,
 * other sleepers on the channel), e.g. before closing the channel under them.
 */
int shmchan_wait_head(shmchan_channel *ch, uint64_t pos, int64_t timeout_ns);
void shmchan_wake_head(shmchan_channel *ch);
/*
 * shmchan_wait_head that first polls head for up to spin_ns (as a blocking peek spins before it
 * sleeps); a negative timeout waits for ever. Reads only the channel, never a reader: a binding may
 * wait so on one thread while other threads use the reader. 0 (look again: head moved, or a
 * wake-up), -ETIMEDOUT, -EINTR or -ECANCELED (shmchan_interrupt).
 */
int shmchan_wait_head_spin(shmchan_channel *ch, uint64_t pos, int64_t spin_ns, int64_t timeout_ns);
/* Counts one wait for an empty ring in the reader's statistics (empty_waits), for a binding that
   waits with shmchan_wait_head_spin rather than a blocking peek. */
void shmchan_reader_count_empty(shmchan_reader *r);
/* Messages this reader lost to lapping since it attached (BROADCAST/OVERWRITE). */
uint64_t shmchan_reader_lost(const shmchan_reader *r);
/* The next position this reader will take. */
uint64_t shmchan_reader_position(const shmchan_reader *r);
/* Reader places of a BROADCAST channel: fills up to max entries, returns how many places exist. */
int shmchan_reader_places(const shmchan_channel *ch, struct shmchan_place_info *out, uint32_t max);

/* ---- state board ---- */

/*
 * Copies the newest value of a STATE channel into buf (up to cap bytes) with its version (1, 2, ...
 * counting publishes). Never torn: the copy is checked against the slot's sequence and retried.
 * Returns 0, -ENODATA when nothing was published yet (*version 0), -EMSGSIZE (*len set) when cap is
 * short, or -EBUSY when the writer replaced the value faster than it could be copied 10000 times.
 */
int shmchan_state_read(shmchan_channel *ch, void *buf, uint64_t cap, uint64_t *len, uint64_t *version);
/* The version of the newest value (0: none yet). */
uint64_t shmchan_state_version(const shmchan_channel *ch);
/* Sleeps (without spinning) until the version differs from `version`; *now gets the new one.
   -ETIMEDOUT, -EAGAIN (timeout 0), -EINTR, or -SHMCHAN_EPEERDEAD when the writer died attached. */
int shmchan_state_wait(shmchan_channel *ch, uint64_t version, int64_t timeout_ns, uint64_t *now);

#ifdef __cplusplus
}
#endif
#endif
