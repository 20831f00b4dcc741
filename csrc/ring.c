/* SPDX-License-Identifier: MIT */
/* The single-producer single-consumer ring: reserve/commit/abort, peek/release, and waiting. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

/*
 * Barriers (docs/protocol.md has the same table):
 *   (A) writer: store of lens[slot], ordered before (B)
 *   (B) writer release of head            pairs with (C) reader acquire of head
 *   (D) reader release of tail            pairs with (E) writer acquire of tail
 *   (F) release of a *_wake event count   pairs with (G) the sleeper's acquire of it
 *   (W) commit/release full fence         pairs with (R) the sleeper's full fence (flag, then re-check)
 *   (L0) release of writer/reader_state   pairs with (L1)/(L2) in liveness.c
 */

#define NO_RESERVATION UINT64_MAX

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

/* ---- waiting ---- */

/* Whether shmchan_interrupt (the handle) or shmchan_writer_interrupt (the waiting writer) was called. */
static int cancelled(const struct shmchan_waiter *wt)
{
	return shmchan_interrupted(wt->ch) || (wt->cancel && shmchan_read_once32(wt->cancel));
}

int64_t shmchan_channel_polite_ns(shmchan_channel *ch)
{
	uint64_t v = shmchan_read_once64(&ch->polite_ns);

	if (v == 0) {
		v = (uint64_t)shmchan_polite_after_ns() + 1;
		shmchan_write_once64(&ch->polite_ns, v); /* any thread may look it up: all find the same */
	}
	return (int64_t)(v - 1);
}

int shmchan_wait_change(const struct shmchan_waiter *wt, int64_t timeout_ns, uint64_t *seen)
{
	struct shmchan_header *h = wt->ch->hdr;
	const int64_t start = timeout_ns == 0 ? 0 : shmchan_now_ns();
	const int64_t deadline = shmchan_deadline(start, timeout_ns);
	int checked_alive = 0;
	uint64_t v;
	uint32_t seq;
	int rc, i;

	if (timeout_ns != 0 && wt->spin_ns > 0) {
		const int64_t spin = shmchan_deadline(start, wt->spin_ns);
		const int64_t spin_end = spin < deadline ? spin : deadline;
		/* after a while, let a peer that shares our CPU run (see polite_after_ns) */
		const int64_t polite = start + wt->polite_ns;
		int64_t now;
		do {
			for (i = 0; i < 32; i++) {
				/* (C)/(E) acquire: see the peer's slot work; pairs with (B)/(D) */
				v = shmchan_load_acquire64(wt->watched);
				if (v != wt->stale) {
					*seen = v;
					return 0;
				}
				shmchan_cpu_relax();
			}
			if (cancelled(wt))
				return -ECANCELED;
			now = shmchan_now_ns();
			if (now >= polite)
				sched_yield();
		} while (now < spin_end);
	}

	if (wt->counted)
		shmchan_fetch_add32(wt->my_flag, 1);
	for (;;) {
		rc = 0;
		if (!wt->counted)
			shmchan_write_once32(wt->my_flag, 1);
		/* (R) full fence: flag store before the re-check below; pairs with (W) in commit/release */
		shmchan_fence_seq_cst();
		/* (G) acquire: a new event count implies the new position; pairs with (F) */
		seq = shmchan_load_acquire32(wt->wake_word);
		/* (C)/(E) acquire: pairs with (B)/(D) */
		v = shmchan_load_acquire64(wt->watched);
		if (v != wt->stale) {
			*seen = v;
			rc = 0;
			break;
		}
		/*
		 * A writer's last commit may have come after our load of the position above, so the
		 * position is loaded again before the end (or a dead peer) is believed: else it is lost.
		 * (L1) acquire: a writer that closed has published everything it will; pairs with (L0)
		 */
		if (wt->ends_on_close && shmchan_load_acquire32(&h->writer_state) == SHMCHAN_PEER_CLOSED) {
			rc = -SHMCHAN_EENDED;
		} else if (!checked_alive) {
			if (!shmchan_peer_alive(wt->ch, wt->peer_is_writer))
				rc = -SHMCHAN_EPEERDEAD;
			checked_alive = 1;
		}
		if (rc == -SHMCHAN_EENDED || rc == -SHMCHAN_EPEERDEAD) {
			/* (C)/(E) acquire: pairs with (B)/(D), made before the close or the death */
			v = shmchan_load_acquire64(wt->watched);
			if (v != wt->stale) {
				*seen = v;
				rc = 0;
			}
			break;
		}
		{
			int64_t now = timeout_ns == 0 ? 0 : shmchan_now_ns();
			int64_t left = deadline - now;
			if (timeout_ns == 0 || left <= 0) {
				rc = timeout_ns == 0 ? -EAGAIN : -ETIMEDOUT;
				break;
			}
			if (cancelled(wt)) {
				rc = -ECANCELED;
				break;
			}
			rc = shmchan_futex_wait(wt->wake_word, seq, left < SHMCHAN_SLICE_NS ? left : SHMCHAN_SLICE_NS);
		}
		if (rc == -EINTR)
			break;
		if (rc == -ETIMEDOUT)
			checked_alive = 0; /* a slice passed: look at the peer again */
		else if (rc != 0)
			break;
	}
	if (wt->counted)
		shmchan_fetch_sub32(wt->my_flag, 1);
	else
		shmchan_write_once32(wt->my_flag, 0);
	return rc;
}

/* Bumps an event count and wakes the peer (every sleeper, when `all`) if it said it sleeps. */
void shmchan_notify(_Atomic uint32_t *wake_word, uint32_t *seq, _Atomic uint32_t *peer_flag, int all)
{
	*seq += 1;
	/* (F) release: the position store before it is visible to whoever sees the new count; pairs with (G) */
	shmchan_store_release32(wake_word, *seq);
	/* (W) full fence: position and count stores before reading the flag; pairs with (R) */
	shmchan_fence_seq_cst();
	if (shmchan_read_once32(peer_flag)) {
		if (all)
			shmchan_futex_wake_all(wake_word);
		else
			shmchan_futex_wake(wake_word);
	}
}

static void notify(_Atomic uint32_t *wake_word, uint32_t *seq, _Atomic uint32_t *peer_flag)
{
	shmchan_notify(wake_word, seq, peer_flag, 0);
}

static void set_state(_Atomic uint32_t *state, uint32_t v)
{
	/* (L0) release: pid and generation before the state; pairs with (L1)/(L2) in liveness.c */
	shmchan_store_release32(state, v);
}

/* ---- attaching either side ---- */

static int lock_of(int writer_side)
{
	return writer_side ? SHMCHAN_LOCK_WRITER : SHMCHAN_LOCK_READER;
}

/* The start of an attach: take the side's lock, then read both positions and check them. */
static int begin_attach(shmchan_channel *ch, int writer_side, uint64_t *head, uint64_t *tail)
{
	struct shmchan_header *h = ch->hdr;
	int rc;

	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	if (writer_side ? ch->writer != NULL : ch->reader != NULL)
		return -EBUSY;
	rc = shmchan_lock_byte(ch->fd, lock_of(writer_side), 1);
	if (rc)
		return rc;
	/* Our own position: nobody else moves it while we hold the lock (a dead predecessor may have
	   left it anywhere, hence the check below). The peer's keeps moving. */
	if (writer_side) {
		*head = shmchan_read_once64(&h->head);
		/* (E) acquire: pairs with (D) */
		*tail = shmchan_load_acquire64(&h->tail);
	} else {
		*tail = shmchan_read_once64(&h->tail);
		/* (C) acquire: pairs with (B) */
		*head = shmchan_load_acquire64(&h->head);
	}
	if (ch->g.kind == SHMCHAN_KIND_SPSC && *head - *tail > ch->g.capacity) {
		shmchan_unlock_byte(ch->fd, lock_of(writer_side));
		return shmchan_poison(ch, "corrupt positions at %s attach: head %llu, tail %llu, capacity %u",
				      writer_side ? "writer" : "reader", (unsigned long long)*head,
				      (unsigned long long)*tail, ch->g.capacity);
	}
	return 0;
}

/* The end of an attach, once the handle is ready: announce the new peer. */
static void finish_attach(shmchan_channel *ch, int writer_side)
{
	struct shmchan_header *h = ch->hdr;
	_Atomic uint64_t *gen = writer_side ? &h->writer_gen : &h->reader_gen;

	shmchan_write_once32(writer_side ? &h->writer_waiting : &h->reader_waiting, 0);
	shmchan_write_once64(gen, shmchan_read_once64(gen) + 1);
	shmchan_write_once32(writer_side ? &h->writer_pid : &h->reader_pid, (uint32_t)getpid());
	set_state(writer_side ? &h->writer_state : &h->reader_state, SHMCHAN_PEER_ATTACHED);
}

/* ---- writer ---- */

int shmchan_writer_attach(shmchan_channel *ch, shmchan_writer **out)
{
	struct shmchan_header *h;
	shmchan_writer *w;
	uint64_t head, tail;
	int rc;

	if (!ch || !out)
		return -EINVAL;
	*out = NULL;
	rc = begin_attach(ch, 1, &head, &tail);
	if (rc)
		return rc;
	h = ch->hdr;
	w = calloc(1, sizeof(*w));
	if (!w) {
		shmchan_unlock_byte(ch->fd, SHMCHAN_LOCK_WRITER);
		return -ENOMEM;
	}
	w->ch = ch;
	w->head = head;
	w->cached_tail = tail;
	w->reserved = NO_RESERVATION;
	w->messages = shmchan_read_once64(&h->w_messages);
	w->bytes = shmchan_read_once64(&h->w_bytes);
	w->full = shmchan_read_once64(&h->w_full);
	w->aborts = shmchan_read_once64(&h->w_aborts);
	w->wake_seq = shmchan_read_once32(&h->head_wake);
	w->spin_ns = SHMCHAN_DEFAULT_SPIN_NS;
	w->polite_ns = shmchan_polite_after_ns();
	if (ch->g.kind == SHMCHAN_KIND_BROADCAST) {
		rc = shmchan_bc_writer_init(w);
		if (rc) {
			free(w);
			shmchan_unlock_byte(ch->fd, SHMCHAN_LOCK_WRITER);
			return rc;
		}
	}
	finish_attach(ch, 1);
	ch->writer = w;
	*out = w;
	return 0;
}

void shmchan_writer_end(shmchan_writer *w)
{
	struct shmchan_header *h;

	if (!w || w->ended)
		return;
	h = w->ch->hdr;
	if (w->reserved != NO_RESERVATION)
		shmchan_abort(w);
	set_state(&h->writer_state, SHMCHAN_PEER_CLOSED);
	/* wake readers asleep on an empty ring: they must learn that the stream ended */
	shmchan_notify(&h->head_wake, &w->wake_seq, &h->reader_waiting, w->ch->g.kind != SHMCHAN_KIND_SPSC);
	w->ended = 1;
}

void shmchan_writer_close(shmchan_writer *w)
{
	if (!w)
		return;
	shmchan_writer_end(w);
	shmchan_unlock_byte(w->ch->fd, SHMCHAN_LOCK_WRITER);
	w->ch->writer = NULL;
	free(w->dead_gen);
	free(w);
}

uint64_t shmchan_writer_position(const shmchan_writer *w)
{
	return w ? w->head : 0;
}

void shmchan_writer_interrupt(shmchan_writer *w)
{
	if (!w)
		return;
	shmchan_write_once32(&w->interrupted, 1);
	shmchan_futex_wake_all(&w->ch->hdr->tail_wake); /* where a blocked reserve sleeps */
}

void shmchan_writer_set_spin(shmchan_writer *w, int64_t spin_ns)
{
	if (w)
		w->spin_ns = spin_ns;
}

void shmchan_writer_continue_wait(shmchan_writer *w)
{
	if (w)
		w->continuing = 1;
}

/* shmchan_reserve, or shmchan_try_reserve with timeout_ns SHMCHAN_TRY_NS. */
static int reserve(shmchan_writer *w, uint64_t nbytes, int64_t timeout_ns, void **data, uint32_t *slot)
{
	shmchan_channel *ch;
	struct shmchan_header *h;
	uint64_t tail;
	uint32_t s;
	int rc, continuing;

	if (!w || !data)
		return -EINVAL;
	ch = w->ch;
	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	if (w->ended)
		return -EPIPE;
	if (w->reserved != NO_RESERVATION)
		return -EALREADY;
	if (nbytes > ch->g.slot_size)
		return -EMSGSIZE;
	if (ch->g.kind == SHMCHAN_KIND_BROADCAST)
		return shmchan_bc_reserve(w, nbytes, timeout_ns, data, slot);
	if (ch->g.kind == SHMCHAN_KIND_STATE)
		return shmchan_st_reserve(w, nbytes, data, slot);
	h = ch->hdr;
	continuing = w->continuing;
	w->continuing = 0;
	if (w->head - w->cached_tail >= ch->g.capacity) {
		/* (E) acquire: the reader is done with the slot before we overwrite it; pairs with (D) */
		tail = shmchan_load_acquire64(&h->tail);
		if (w->head - tail >= ch->g.capacity) {
			struct shmchan_waiter wt = {ch, &h->tail, w->head - ch->g.capacity, &h->tail_wake,
						    &h->writer_waiting, 0, 0, 0, w->spin_ns, w->polite_ns, &w->interrupted};
			if (timeout_ns == SHMCHAN_TRY_NS)
				return -EAGAIN;
			if (!continuing)
				shmchan_write_once64(&h->w_full, ++w->full);
			rc = shmchan_wait_change(&wt, timeout_ns, &tail);
			if (rc)
				return rc;
		}
		/* tail is the reader's: check it before trusting it */
		if (w->head - tail > ch->g.capacity)
			return shmchan_poison(ch, "corrupt tail %llu for head %llu (capacity %u)",
					      (unsigned long long)tail, (unsigned long long)w->head, ch->g.capacity);
		w->cached_tail = tail;
	}
	rc = shmchan_check_truncated(ch);
	if (rc)
		return rc;
	s = (uint32_t)(w->head & ch->g.mask);
	w->reserved = nbytes;
	*data = ch->data + (uint64_t)s * ch->g.slot_stride;
	if (slot)
		*slot = s;
	return 0;
}

int shmchan_reserve(shmchan_writer *w, uint64_t nbytes, int64_t timeout_ns, void **data, uint32_t *slot)
{
	return reserve(w, nbytes, timeout_ns < 0 ? -1 : timeout_ns, data, slot);
}

int shmchan_try_reserve(shmchan_writer *w, uint64_t nbytes, void **data, uint32_t *slot)
{
	return reserve(w, nbytes, SHMCHAN_TRY_NS, data, slot);
}

static void sync_range(uint8_t *start, uint64_t len, int flags)
{
	uintptr_t a = (uintptr_t)start & ~((uintptr_t)shmchan_page_size() - 1);

	(void)msync((void *)a, (size_t)((uintptr_t)start + len - a), flags);
}

/* msync flags after each commit, or 0 when the policy says not to. */
static int commit_sync_flags(const shmchan_channel *ch)
{
	uint32_t policy = ch->g.flags & SHMCHAN_FLAG_MSYNC_MASK;

	return policy == SHMCHAN_MSYNC_SYNC ? MS_SYNC : policy == SHMCHAN_MSYNC_ASYNC ? MS_ASYNC : 0;
}

/* The msync policy after a commit to slot s: the payload first (before the position is published). */
void shmchan_sync_slot(shmchan_channel *ch, uint32_t s, uint64_t nbytes)
{
	int flags = commit_sync_flags(ch);

	if (flags)
		sync_range(ch->data + (uint64_t)s * ch->g.slot_stride, nbytes ? nbytes : 1, flags);
}

/* ...and then the control block with the new position (and the page of the slot table after it). */
void shmchan_sync_control(shmchan_channel *ch)
{
	int flags = commit_sync_flags(ch);

	if (flags)
		sync_range(ch->base, SHMCHAN_CONTROL_SIZE, flags);
}

int shmchan_commit(shmchan_writer *w, uint64_t nbytes)
{
	shmchan_channel *ch;
	struct shmchan_header *h;
	uint32_t s;

	if (!w)
		return -EINVAL;
	if (w->reserved == NO_RESERVATION)
		return -ENOENT;
	if (nbytes > w->reserved)
		return -EMSGSIZE;
	ch = w->ch;
	h = ch->hdr;
	if (shmchan_check_truncated(ch)) {
		w->reserved = NO_RESERVATION; /* the payload went into the void: never publish it */
		return -SHMCHAN_ECORRUPT;
	}
	if (ch->g.kind == SHMCHAN_KIND_BROADCAST)
		return shmchan_bc_commit(w, nbytes);
	if (ch->g.kind == SHMCHAN_KIND_STATE)
		return shmchan_st_commit(w, nbytes);
	s = (uint32_t)(w->head & ch->g.mask);
	/* (A) the length; ordered before head by (B) */
	shmchan_write_once64(&ch->lens[s], nbytes);
	w->head += 1;
	w->reserved = NO_RESERVATION;
	if (shmchan_syncs_commits(ch))
		shmchan_sync_slot(ch, s, nbytes);
	/* (B) release: payload and length before head; pairs with (C) */
	shmchan_store_release64(&h->head, w->head);
	shmchan_write_once64(&h->w_messages, ++w->messages);
	w->bytes += nbytes;
	shmchan_write_once64(&h->w_bytes, w->bytes);
	notify(&h->head_wake, &w->wake_seq, &h->reader_waiting);
	if (shmchan_syncs_commits(ch))
		shmchan_sync_control(ch);
	return shmchan_check_truncated(ch);
}

int shmchan_abort(shmchan_writer *w)
{
	if (!w)
		return -EINVAL;
	if (w->reserved == NO_RESERVATION)
		return -ENOENT;
	w->reserved = NO_RESERVATION;
	shmchan_write_once64(&w->ch->hdr->w_aborts, ++w->aborts);
	return 0;
}

int shmchan_send(shmchan_writer *w, const char *data, uint64_t nbytes, int64_t timeout_ns)
{
	void *dst;
	int rc;

	if (!data && nbytes)
		return -EINVAL;
	rc = reserve(w, nbytes, timeout_ns < 0 ? -1 : timeout_ns, &dst, NULL);
	if (rc)
		return rc;
	if (nbytes)
		memcpy(dst, data, (size_t)nbytes);
	return shmchan_commit(w, nbytes);
}

/* ---- reader ---- */

int shmchan_reader_attach(shmchan_channel *ch, shmchan_reader **out)
{
	return shmchan_reader_attach_ex(ch, SHMCHAN_START_LATEST, out);
}

int shmchan_reader_attach_ex(shmchan_channel *ch, uint32_t flags, shmchan_reader **out)
{
	struct shmchan_header *h;
	shmchan_reader *r;
	uint64_t head, tail;
	int rc;

	if (!ch || !out || flags > SHMCHAN_START_OLDEST)
		return -EINVAL;
	*out = NULL;
	if (ch->g.kind == SHMCHAN_KIND_STATE)
		return -EOPNOTSUPP; /* a board is read with shmchan_state_read, by any number of handles */
	if (ch->g.kind == SHMCHAN_KIND_BROADCAST)
		return shmchan_bc_reader_attach(ch, flags, out);
	rc = begin_attach(ch, 0, &head, &tail);
	if (rc)
		return rc;
	h = ch->hdr;
	r = shmchan_reader_new(ch);
	if (!r) {
		shmchan_unlock_byte(ch->fd, SHMCHAN_LOCK_READER);
		return -ENOMEM;
	}
	r->tail = r->read_pos = tail;
	r->cached_head = head;
	r->messages = shmchan_read_once64(&h->r_messages);
	r->bytes = shmchan_read_once64(&h->r_bytes);
	r->empty = shmchan_read_once64(&h->r_empty);
	r->wake_seq = shmchan_read_once32(&h->tail_wake);
	finish_attach(ch, 0);
	ch->reader = r;
	*out = r;
	return 0;
}

void shmchan_reader_close(shmchan_reader *r)
{
	if (!r)
		return;
	if (r->place) {
		shmchan_bc_reader_close(r);
		return;
	}
	/* Unreleased messages are not released: a new reader gets them again (at-least-once). */
	set_state(&r->ch->hdr->reader_state, SHMCHAN_PEER_CLOSED);
	shmchan_unlock_byte(r->ch->fd, SHMCHAN_LOCK_READER);
	shmchan_reader_free(r);
}

/* A reader handle with its per-slot bookkeeping and default waiting, not attached yet. */
shmchan_reader *shmchan_reader_new(shmchan_channel *ch)
{
	shmchan_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->ch = ch;
	r->released = calloc(ch->g.capacity, 1);
	r->taken_len = calloc(ch->g.capacity, sizeof(uint64_t));
	r->spin_ns = SHMCHAN_DEFAULT_SPIN_NS;
	r->polite_ns = shmchan_polite_after_ns();
	if (!r->released || !r->taken_len) {
		shmchan_reader_free(r);
		return NULL;
	}
	return r;
}

/* Frees a reader handle, detaching it from its channel handle. */
void shmchan_reader_free(shmchan_reader *r)
{
	if (r->ch->reader == r)
		r->ch->reader = NULL;
	free(r->released);
	free(r->taken_len);
	free(r);
}

void shmchan_reader_set_spin(shmchan_reader *r, int64_t spin_ns)
{
	if (r)
		r->spin_ns = spin_ns;
}

void shmchan_reader_continue_wait(shmchan_reader *r)
{
	if (r)
		r->continuing = 1;
}

void shmchan_reader_count_empty(shmchan_reader *r)
{
	if (r)
		shmchan_write_once64(r->place ? &r->place->empty : &r->ch->hdr->r_empty, ++r->empty);
}

uint64_t shmchan_reader_outstanding(const shmchan_reader *r)
{
	return r ? r->read_pos - r->tail : 0;
}

uint64_t shmchan_reader_lost(const shmchan_reader *r)
{
	return r ? r->lost : 0;
}

uint64_t shmchan_reader_position(const shmchan_reader *r)
{
	return r ? r->read_pos : 0;
}

int shmchan_check(shmchan_reader *r, uint64_t pos)
{
	if (!r)
		return -EINVAL;
	if (r->place)
		return shmchan_bc_check(r, pos);
	if (pos - r->tail >= r->read_pos - r->tail || r->released[pos & r->ch->g.mask])
		return -EINVAL;
	return 0;
}

/*
 * head is the writer's: check it before caching it. It never lies behind what we took; and unless
 * the writer may lap us (broadcast, overwrite policy), never more than capacity past our tail.
 */
int shmchan_accept_head(shmchan_reader *r, uint64_t head)
{
	shmchan_channel *ch = r->ch;
	const int laps = ch->g.kind == SHMCHAN_KIND_BROADCAST && ch->g.policy == SHMCHAN_POLICY_OVERWRITE;

	if (head - r->read_pos >= (UINT64_C(1) << 63) || (!laps && head - r->tail > ch->g.capacity))
		return shmchan_poison(ch, "corrupt head %llu for tail %llu, read position %llu (capacity %u)",
				      (unsigned long long)head, (unsigned long long)r->tail,
				      (unsigned long long)r->read_pos, ch->g.capacity);
	r->cached_head = head;
	return 0;
}

/* Makes sure at least one message is past read_pos, refreshing (and checking) head if needed. */
int shmchan_ensure_available(shmchan_reader *r, int64_t timeout_ns)
{
	shmchan_channel *ch = r->ch;
	struct shmchan_header *h = ch->hdr;
	const int continuing = r->continuing;
	uint64_t head;
	int rc;

	r->continuing = 0;
	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	if (r->read_pos != r->cached_head)
		return 0;
	/* (C) acquire: payloads and lengths up to head are complete; pairs with (B) */
	head = shmchan_load_acquire64(&h->head);
	rc = shmchan_check_truncated(ch); /* that load may have been from a zero page */
	if (rc)
		return rc;
	if (head == r->read_pos) {
		/* broadcast readers share head_wake and count themselves in reader_waiting */
		struct shmchan_waiter wt = {ch, &h->head, r->read_pos, &h->head_wake, &h->reader_waiting, 1,
					    r->place != NULL, 1, r->spin_ns, r->polite_ns, NULL};
		if (r->read_pos - r->tail == ch->g.capacity)
			return -SHMCHAN_EPINNED; /* the writer cannot go on until we release something */
		if (timeout_ns == SHMCHAN_TRY_NS)
			return -EAGAIN;
		if (!continuing)
			shmchan_write_once64(r->place ? &r->place->empty : &h->r_empty, ++r->empty);
		rc = shmchan_wait_change(&wt, timeout_ns, &head);
		if (rc)
			return rc;
		rc = shmchan_check_truncated(ch);
		if (rc)
			return rc;
	}
	return shmchan_accept_head(r, head); /* head != read_pos here: a wait only ends on a change */
}

/* Takes the message at read_pos (known to be available) into *msg. */
static int take(shmchan_reader *r, struct shmchan_msg *msg)
{
	shmchan_channel *ch = r->ch;
	uint32_t s = (uint32_t)(r->read_pos & ch->g.mask);
	/* the length is the writer's: read it once, check it, use only the local */
	uint64_t len = shmchan_read_once64(&ch->lens[s]);

	if (shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT;
	if (len > ch->g.slot_size)
		return shmchan_poison(ch, "corrupt length %llu in slot %u (slot size %llu)", (unsigned long long)len, s,
				      (unsigned long long)ch->g.slot_size);
	msg->pos = r->read_pos;
	msg->len = len;
	msg->slot = s;
	msg->lost = 0;
	msg->data = ch->data + (uint64_t)s * ch->g.slot_stride;
	r->taken_len[s] = len;
	r->read_pos += 1;
	return 0;
}

int shmchan_peek(shmchan_reader *r, int64_t timeout_ns, struct shmchan_msg *msg)
{
	int rc;

	if (!r || !msg)
		return -EINVAL;
	if (timeout_ns < 0)
		timeout_ns = -1;
	if (r->place) {
		rc = shmchan_bc_peek_batch(r, msg, 1, timeout_ns);
		return rc < 0 ? rc : 0;
	}
	rc = shmchan_ensure_available(r, timeout_ns);
	if (rc)
		return rc;
	return take(r, msg);
}

int shmchan_wait_readable(shmchan_reader *r, int64_t timeout_ns)
{
	if (!r)
		return -EINVAL;
	return shmchan_ensure_available(r, timeout_ns < 0 ? -1 : timeout_ns);
}

/* shmchan_peek_batch, or shmchan_try_peek_batch with timeout_ns SHMCHAN_TRY_NS. */
static int peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max, int64_t timeout_ns)
{
	uint32_t n = 0;
	int rc;

	if (!r || !msgs || max == 0 || max > INT32_MAX)
		return -EINVAL;
	if (r->place)
		return shmchan_bc_peek_batch(r, msgs, max, timeout_ns);
	rc = shmchan_ensure_available(r, timeout_ns);
	if (rc)
		return rc;
	for (;;) {
		while (n < max && r->read_pos != r->cached_head) {
			rc = take(r, &msgs[n]);
			if (rc)
				return rc; /* the handle is poisoned: nothing taken in this call can be trusted */
			n++;
		}
		if (n == max)
			break;
		/* (C) acquire: more may have been committed since head was cached; pairs with (B) */
		uint64_t head = shmchan_load_acquire64(&r->ch->hdr->head);
		if (head == r->cached_head)
			break;
		rc = shmchan_accept_head(r, head);
		if (rc)
			return rc;
	}
	return (int)n;
}

int shmchan_peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max, int64_t timeout_ns)
{
	return peek_batch(r, msgs, max, timeout_ns < 0 ? -1 : timeout_ns);
}

int shmchan_try_peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max)
{
	return peek_batch(r, msgs, max, SHMCHAN_TRY_NS);
}

int shmchan_release(shmchan_reader *r, uint64_t pos)
{
	shmchan_channel *ch;
	struct shmchan_header *h;
	uint64_t n = 0;

	if (!r)
		return -EINVAL;
	if (r->place)
		return shmchan_bc_release(r, pos);
	ch = r->ch;
	if (ch->poisoned || shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT; /* what the caller read from the slot cannot be trusted */
	/* outstanding means tail <= pos < read_pos, in wrapping (free-running) arithmetic */
	if (pos - r->tail >= r->read_pos - r->tail || r->released[pos & ch->g.mask])
		return -EINVAL;
	r->released[pos & ch->g.mask] = 1;
	while (r->tail != r->read_pos && r->released[r->tail & ch->g.mask]) {
		r->released[r->tail & ch->g.mask] = 0;
		r->bytes += r->taken_len[r->tail & ch->g.mask];
		r->tail += 1;
		n++;
	}
	if (n == 0)
		return 0; /* an earlier message is still held: this one goes back with it */
	h = ch->hdr;
	r->messages += n;
	/* (D) release: our reads of the slots before the writer may reuse them; pairs with (E) */
	shmchan_store_release64(&h->tail, r->tail);
	shmchan_write_once64(&h->r_messages, r->messages);
	shmchan_write_once64(&h->r_bytes, r->bytes);
	notify(&h->tail_wake, &r->wake_seq, &h->writer_waiting);
	return 0;
}

int shmchan_recv(shmchan_reader *r, void *buf, uint64_t cap, uint64_t *len, int64_t timeout_ns)
{
	struct shmchan_msg m;
	int rc;

	if (!r || (!buf && cap) || !len)
		return -EINVAL;
	if (timeout_ns < 0)
		timeout_ns = -1;
	if (r->place)
		return shmchan_bc_recv(r, buf, cap, len, timeout_ns);
	rc = shmchan_peek(r, timeout_ns, &m);
	if (rc)
		return rc;
	*len = m.len;
	if (m.len > cap) {
		/* give it back untouched: the caller may retry with a larger buffer */
		r->read_pos -= 1;
		return -EMSGSIZE;
	}
	if (m.len)
		memcpy(buf, m.data, (size_t)m.len);
	rc = shmchan_check_truncated(r->ch); /* the copy may have read zeros from a truncated object */
	if (rc)
		return rc;
	return shmchan_release(r, m.pos);
}

int shmchan_inspect(shmchan_channel *ch, uint64_t pos, void *buf, uint64_t cap, uint64_t *len, uint64_t *first,
		    uint64_t *end)
{
	struct shmchan_header *h;
	uint64_t head, tail, n;
	uint32_t s;

	if (!ch || !len || !first || !end || (!buf && cap))
		return -EINVAL;
	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	if (ch->g.kind != SHMCHAN_KIND_SPSC)
		return shmchan_bc_inspect(ch, pos, buf, cap, len, first, end);
	h = ch->hdr;
	/*
	 * A snapshot of [tail, head) while both move: tail, head, then tail again. While tail stays
	 * put the writer cannot get more than capacity ahead of it, so only then does
	 * head - tail > capacity prove corruption.
	 */
	for (int tries = 0;; tries++) {
		/* (E) acquire: pairs with (D); a slot below tail may already be rewritten */
		tail = shmchan_load_acquire64(&h->tail);
		/* (C) acquire: payloads and lengths below head are complete; pairs with (B) */
		head = shmchan_load_acquire64(&h->head);
		/* (E) acquire: pairs with (D) */
		if (shmchan_load_acquire64(&h->tail) == tail)
			break;
		if (tries == 100)
			return -ESTALE; /* too busy to get a snapshot */
	}
	if (shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT;
	if (head - tail > ch->g.capacity)
		return shmchan_poison(ch, "corrupt positions: head %llu, tail %llu, capacity %u",
				      (unsigned long long)head, (unsigned long long)tail, ch->g.capacity);
	*first = tail;
	*end = head;
	if (pos - tail >= head - tail)
		return -ENOENT;
	s = (uint32_t)(pos & ch->g.mask);
	n = shmchan_read_once64(&ch->lens[s]);
	if (n > ch->g.slot_size)
		return shmchan_poison(ch, "corrupt length %llu in slot %u (slot size %llu)", (unsigned long long)n, s,
				      (unsigned long long)ch->g.slot_size);
	*len = n;
	if (n > cap)
		return -EMSGSIZE;
	if (n) /* buf may be NULL when cap is 0 */
		memcpy(buf, ch->data + (uint64_t)s * ch->g.slot_stride, (size_t)n);
	/* (K) acquire fence: the copy above completes before tail is read again (a seqlock re-check) */
	shmchan_fence_acquire();
	if (shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT;
	/* the writer rewrites slot s only after tail passes pos: if it did, the copy may be torn */
	if (shmchan_read_once64(&h->tail) - tail > pos - tail)
		return -ESTALE;
	return 0;
}
