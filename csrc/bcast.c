/* SPDX-License-Identifier: MIT */
/* BROADCAST (one writer, many readers, block or overwrite) and STATE (a versioned board) kinds. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/*
 * Barriers (docs/protocol.md has the same table), in addition to (B)/(C) on head, (F)/(G) on the
 * event counts and (W)/(R) on the sleeper counts, which work as for SPSC channels:
 *   (M1) writer: stamp seq = WRITING, then a release fence, then the payload   pairs with (M3)
 *   (M2) writer: release store of seq = position + 1 after payload and length  pairs with (M4)
 *   (M3) reader: acquire fence after reading the payload, then seq again       pairs with (M1)
 *   (M4) reader: acquire load of seq before trusting length and payload        pairs with (M2)
 *   (D2) reader: release store of its cursor after it is done with the slots   pairs with (E2)
 *   (E2) writer: acquire load of a cursor during a scan                        pairs with (D2)
 *   (J1) joiner: place stores, full fence, then scan_seq                       pairs with (J2)
 *   (J2) writer: odd scan_seq, full fence, then the cursors                    pairs with (J1)
 *   (J3) writer: release store of an even scan_seq after the floor            pairs with (J4)
 *   (J4) joiner: acquire load of scan_seq before the floor                     pairs with (J3)
 *   (L0) release of a place's state after its pid, generation and cursor      pairs with (L3)
 *   (L3) writer: acquire load of a place's state before its generation/cursor  pairs with (L0)
 *
 * Block policy: the writer may write position q only when q - floor < capacity, where floor is the
 * lowest cursor of the live readers it saw in its last scan (its own head when there are none);
 * so it never overwrites a position >= floor, and floor only grows. A joining reader publishes
 * its place, then raises its start to at least the floor of every scan that might have missed it
 * (the J pairs: a scan either sees the place, or the joiner sees that scan's odd scan_seq and
 * waits for its floor).
 *
 * Overwrite policy: the writer never looks at readers. Each slot carries the position it holds
 * (seq = position + 1); a reader checks it before and after using the payload, like a seqlock,
 * and a reader the writer has lapped skips to the oldest position that is still safe to read.
 */

#define NO_RESERVATION UINT64_MAX
#define JOIN_SPIN_NS 10000000 /* 10 ms: a writer's scan takes microseconds; then look for a dead one */

static int lock_of_place(uint32_t i)
{
	return SHMCHAN_LOCK_READERS + (int)i;
}

/* Whether the owner of place i holds its lock (or we cannot tell: never declare a live reader
   dead). This handle's own reader counts as alive: F_OFD_GETLK does not report our own locks. */
int shmchan_bc_place_alive(const shmchan_channel *ch, uint32_t i)
{
	if (ch->reader && ch->reader->place == &ch->places[i])
		return 1;
	return shmchan_byte_locked(ch->fd, lock_of_place(i)) != 0;
}

static int overwrite(const shmchan_channel *ch)
{
	return ch->g.policy == SHMCHAN_POLICY_OVERWRITE;
}

/* ---- writer ---- */

/*
 * Recomputes the floor: the lowest cursor among live readers, clamped to [old floor, head]. A
 * cursor below the old floor is a joiner that has not raised itself yet (it will); one above head
 * is nonsense from a broken reader and cannot hold the writer back. Neither can make the writer
 * overwrite what a live reader still needs.
 */
static uint64_t scan(shmchan_writer *w)
{
	shmchan_channel *ch = w->ch;
	struct shmchan_header *h = ch->hdr;
	const uint64_t old = w->cached_tail;
	uint64_t m = w->head;

	w->scan_seq += 1; /* odd: scanning */
	shmchan_write_once64(&h->scan_seq, w->scan_seq);
	/* (J2) full fence: odd scan_seq before the cursor loads; pairs with (J1) */
	shmchan_fence_seq_cst();
	for (uint32_t i = 0; i < ch->g.max_readers; i++) {
		struct shmchan_reader_place *p = &ch->places[i];
		uint64_t gen, c;
		/* (L3) acquire: generation and cursor of this owner; pairs with (L0) */
		if (shmchan_load_acquire32(&p->state) != SHMCHAN_PEER_ATTACHED)
			continue;
		gen = shmchan_read_once64(&p->gen);
		if (w->dead_gen[i] == gen + 1)
			continue; /* found dead before, and nobody took the place since */
		/* (E2) acquire: the reader is done with the slots below its cursor; pairs with (D2) */
		c = shmchan_load_acquire64(&p->cursor);
		if (c - old > w->head - old)
			c = (old - c) < (UINT64_C(1) << 63) ? old : w->head;
		if (c - old < m - old)
			m = c;
	}
	shmchan_write_once64(&h->floor, m);
	w->scan_seq += 1; /* even: done */
	/* (J3) release: the floor before the even scan_seq; pairs with (J4) */
	shmchan_store_release64(&h->scan_seq, w->scan_seq);
	w->cached_tail = m;
	return m;
}

int shmchan_bc_writer_init(shmchan_writer *w)
{
	shmchan_channel *ch = w->ch;
	struct shmchan_header *h = ch->hdr;
	uint64_t floor;

	w->dead_gen = calloc(ch->g.max_readers, sizeof(uint64_t));
	if (!w->dead_gen)
		return -ENOMEM;
	/* a predecessor may have died mid-scan, leaving scan_seq odd: start from the next even value */
	w->scan_seq = (shmchan_read_once64(&h->scan_seq) + 1) & ~UINT64_C(1);
	/* the floor is the writer's: check what a predecessor left before building on it */
	floor = shmchan_read_once64(&h->floor);
	if (w->head - floor > ch->g.capacity)
		floor = w->head - ch->g.capacity;
	w->cached_tail = floor;
	scan(w);
	return 0;
}

/* Reader places whose owner died hold the writer back no more (each found once per generation). */
static void bury_dead_blockers(shmchan_writer *w)
{
	shmchan_channel *ch = w->ch;

	for (uint32_t i = 0; i < ch->g.max_readers; i++) {
		struct shmchan_reader_place *p = &ch->places[i];
		uint64_t g1, c;
		/* (L3) acquire: pairs with (L0) */
		if (shmchan_load_acquire32(&p->state) != SHMCHAN_PEER_ATTACHED)
			continue;
		g1 = shmchan_read_once64(&p->gen);
		/* (E2) acquire: pairs with (D2) */
		c = shmchan_load_acquire64(&p->cursor);
		if (w->dead_gen[i] == g1 + 1 || w->head - c < ch->g.capacity)
			continue; /* not the one we wait for */
		if (shmchan_bc_place_alive(ch, i))
			continue;
		/* (L3) acquire: a joiner that took the place meanwhile changed the generation */
		if (shmchan_load_acquire32(&p->state) == SHMCHAN_PEER_ATTACHED && shmchan_read_once64(&p->gen) == g1)
			w->dead_gen[i] = g1 + 1;
	}
}

static int full(const shmchan_writer *w)
{
	return w->head - w->cached_tail >= w->ch->g.capacity;
}

/* Waits (block policy) until the slowest live reader frees a slot. */
static int wait_for_readers(shmchan_writer *w, int64_t timeout_ns)
{
	shmchan_channel *ch = w->ch;
	struct shmchan_header *h = ch->hdr;
	const int64_t start = timeout_ns == 0 ? 0 : shmchan_now_ns();
	const int64_t deadline = shmchan_deadline(start, timeout_ns);
	uint32_t seq;
	int rc = 0;

	if (timeout_ns != 0 && w->spin_ns > 0) {
		const int64_t spin = shmchan_deadline(start, w->spin_ns);
		const int64_t spin_end = spin < deadline ? spin : deadline;
		const int64_t polite = start + w->polite_ns;
		int64_t now;
		do {
			for (int i = 0; i < 8; i++)
				shmchan_cpu_relax();
			scan(w);
			if (!full(w))
				return 0;
			if (shmchan_interrupted(ch) || shmchan_read_once32(&w->interrupted))
				return -ECANCELED;
			now = shmchan_now_ns();
			if (now >= polite)
				sched_yield();
		} while (now < spin_end);
	}
	bury_dead_blockers(w);
	/* only a reader below this can free the slot we wait for: the others need not wake us */
	shmchan_write_once64(&h->need, w->head - ch->g.capacity + 1);
	for (;;) {
		shmchan_write_once32(&h->writer_waiting, 1);
		/* (R) full fence: the flag before the re-check; pairs with (W) in a reader's release */
		shmchan_fence_seq_cst();
		/* (G) acquire: pairs with the readers' increment after their cursor store */
		seq = shmchan_load_acquire32(&h->tail_wake);
		scan(w);
		if (!full(w))
			break;
		{
			int64_t now = timeout_ns == 0 ? 0 : shmchan_now_ns();
			int64_t left = deadline - now;
			if (timeout_ns == 0 || left <= 0) {
				rc = timeout_ns == 0 ? -EAGAIN : -ETIMEDOUT;
				break;
			}
			if (shmchan_interrupted(ch) || shmchan_read_once32(&w->interrupted)) {
				rc = -ECANCELED;
				break;
			}
			rc = shmchan_futex_wait(&h->tail_wake, seq, left < SHMCHAN_SLICE_NS ? left : SHMCHAN_SLICE_NS);
		}
		if (rc == -EINTR)
			break;
		if (rc == -ETIMEDOUT)
			bury_dead_blockers(w); /* a slice passed: is the slowest reader still alive? */
		else if (rc != 0)
			break;
		rc = 0;
	}
	shmchan_write_once32(&h->writer_waiting, 0);
	return rc;
}

/* Starts filling slot s: stamps it so that readers see it is being rewritten. */
static void *open_slot(shmchan_channel *ch, uint32_t s)
{
	shmchan_write_once64(&ch->meta[s].seq, SHMCHAN_SEQ_WRITING);
	/* (M1) release fence: the stamp before any payload store; pairs with (M3) */
	shmchan_fence_release();
	return ch->data + (uint64_t)s * ch->g.slot_stride;
}

int shmchan_bc_reserve(shmchan_writer *w, uint64_t nbytes, int64_t timeout_ns, void **data, uint32_t *slot)
{
	shmchan_channel *ch = w->ch;
	int continuing = w->continuing;
	uint32_t s;
	int rc;

	w->continuing = 0;
	if (!overwrite(ch) && full(w)) {
		scan(w);
		if (full(w)) {
			if (timeout_ns == SHMCHAN_TRY_NS)
				return -EAGAIN;
			if (!continuing)
				shmchan_write_once64(&ch->hdr->w_full, ++w->full);
			rc = wait_for_readers(w, timeout_ns);
			if (rc)
				return rc;
		}
	}
	rc = shmchan_check_truncated(ch);
	if (rc)
		return rc;
	s = (uint32_t)(w->head & ch->g.mask);
	*data = open_slot(ch, s);
	w->reserved = nbytes;
	if (slot)
		*slot = s;
	return 0;
}

/* Publishes the open slot as position w->head (seq = seq_value) and moves head on. */
static int publish(shmchan_writer *w, uint64_t nbytes, uint32_t s, uint64_t seq_value)
{
	shmchan_channel *ch = w->ch;
	struct shmchan_header *h = ch->hdr;

	shmchan_write_once64(&ch->meta[s].len, nbytes);
	if (shmchan_syncs_commits(ch))
		shmchan_sync_slot(ch, s, nbytes);
	/* (M2) release: payload and length before the slot's sequence; pairs with (M4) */
	shmchan_store_release64(&ch->meta[s].seq, seq_value);
	w->head += 1;
	w->reserved = NO_RESERVATION;
	/* (B) release: payload and length before head; pairs with (C) */
	shmchan_store_release64(&h->head, w->head);
	shmchan_write_once64(&h->w_messages, ++w->messages);
	w->bytes += nbytes;
	shmchan_write_once64(&h->w_bytes, w->bytes);
	/* every sleeping reader must see it: one wake-up call for all of them */
	shmchan_notify(&h->head_wake, &w->wake_seq, &h->reader_waiting, 1);
	if (shmchan_syncs_commits(ch))
		shmchan_sync_control(ch);
	return shmchan_check_truncated(ch);
}

int shmchan_bc_commit(shmchan_writer *w, uint64_t nbytes)
{
	return publish(w, nbytes, (uint32_t)(w->head & w->ch->g.mask), w->head + 1);
}

/* ---- state board ---- */

int shmchan_st_reserve(shmchan_writer *w, uint64_t nbytes, void **data, uint32_t *slot)
{
	/* the next version goes to the slot readers are not being sent to */
	uint32_t s = (uint32_t)((w->head + 1) & 1);
	int rc = shmchan_check_truncated(w->ch);

	w->continuing = 0;
	if (rc)
		return rc;
	*data = open_slot(w->ch, s);
	w->reserved = nbytes;
	if (slot)
		*slot = s;
	return 0;
}

int shmchan_st_commit(shmchan_writer *w, uint64_t nbytes)
{
	return publish(w, nbytes, (uint32_t)((w->head + 1) & 1), w->head + 1);
}

static int state_channel(const shmchan_channel *ch)
{
	return ch && ch->g.kind == SHMCHAN_KIND_STATE;
}

uint64_t shmchan_state_version(const shmchan_channel *ch)
{
	/* (C) acquire: pairs with (B) */
	return state_channel(ch) ? shmchan_load_acquire64(&ch->hdr->head) : 0;
}

int shmchan_state_read(shmchan_channel *ch, void *buf, uint64_t cap, uint64_t *len, uint64_t *version)
{
	if (!state_channel(ch) || !len || !version || (!buf && cap))
		return -EINVAL;
	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	for (int tries = 0; tries < 10000; tries++) {
		/* (C) acquire: pairs with (B) */
		uint64_t v = shmchan_load_acquire64(&ch->hdr->head), n;
		uint32_t s = (uint32_t)(v & 1);
		int rc = shmchan_check_truncated(ch);

		if (rc)
			return rc;
		*version = v;
		if (v == 0)
			return -ENODATA;
		if (tries >= 16)
			sched_yield(); /* a writer on our CPU must get to finish */
		/* (M4) acquire: length and payload of version v; pairs with (M2) */
		if (shmchan_load_acquire64(&ch->meta[s].seq) != v)
			continue; /* the writer is already rewriting that slot: look at head again */
		n = shmchan_read_once64(&ch->meta[s].len);
		if (n > ch->g.slot_size) {
			/* (M3) acquire fence: pairs with (M1) */
			shmchan_fence_acquire();
			if (shmchan_read_once64(&ch->meta[s].seq) != v)
				continue;
			return shmchan_poison(ch, "corrupt length %llu of state version %llu (maximum %llu)",
					      (unsigned long long)n, (unsigned long long)v,
					      (unsigned long long)ch->g.slot_size);
		}
		*len = n;
		if (n > cap)
			return -EMSGSIZE;
		if (n)
			memcpy(buf, ch->data + (uint64_t)s * ch->g.slot_stride, (size_t)n); /* buf may be NULL */
		/* (M3) acquire fence: the copy completes before seq is read again; pairs with (M1) */
		shmchan_fence_acquire();
		if (shmchan_read_once64(&ch->meta[s].seq) != v)
			continue; /* torn: the writer started rewriting the slot during the copy */
		return shmchan_check_truncated(ch);
	}
	return -EBUSY;
}

int shmchan_state_wait(shmchan_channel *ch, uint64_t version, int64_t timeout_ns, uint64_t *now_version)
{
	struct shmchan_header *h;
	int rc;

	if (!state_channel(ch) || !now_version)
		return -EINVAL;
	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	h = ch->hdr;
	{
		/* no spinning; the writer closing ends nothing: a board waits for its next writer */
		const struct shmchan_waiter wt = {ch, &h->head, version, &h->head_wake, &h->reader_waiting, 1, 1, 0,
						  0, 0, NULL};
		rc = shmchan_wait_change(&wt, timeout_ns, now_version);
	}
	return rc ? rc : shmchan_check_truncated(ch);
}

/* ---- broadcast reader ---- */

/* A reader's event for a sleeping writer: several readers bump the count, so add (a store of a
   private copy could repeat the value the writer sleeps on). */
static void wake_writer(struct shmchan_header *h)
{
	shmchan_fetch_add32(&h->tail_wake, 1);
	shmchan_futex_wake(&h->tail_wake);
}

static void set_place_state(struct shmchan_reader_place *p, uint32_t v)
{
	/* (L0) release: pid, generation and cursor before the state; pairs with (L3) */
	shmchan_store_release32(&p->state, v);
}

/* Raises a joiner's start to the floor of every writer scan that may have missed its place. */
static void settle_join(shmchan_channel *ch, uint64_t *start)
{
	struct shmchan_header *h = ch->hdr;
	int64_t give_up = 0;

	for (;;) {
		/* (J4) acquire: an even scan_seq comes with that scan's floor; pairs with (J3) */
		uint64_t sseq = shmchan_load_acquire64(&h->scan_seq);
		if (sseq & 1) {
			/* a scan is running; it takes microseconds unless its writer died in it */
			int64_t now = shmchan_now_ns();
			if (shmchan_interrupted(ch))
				break; /* the attach fails below (the handle is going away) */
			if (give_up == 0)
				give_up = now + JOIN_SPIN_NS;
			else if (now > give_up) {
				/* (L1) acquire: pairs with (L0) in ring.c */
				uint32_t ws = shmchan_load_acquire32(&h->writer_state);
				if (!shmchan_peer_alive(ch, 1) || ws != SHMCHAN_PEER_ATTACHED)
					break; /* no live writer: the next one scans afresh, from its floor */
				give_up = now + JOIN_SPIN_NS;
			}
			sched_yield();
			continue;
		}
		break;
	}
	{
		/* that scan's floor; after a writer died scanning, the floor the next one starts from
		   (it clamps our cursor up to it) */
		uint64_t f = shmchan_read_once64(&h->floor);
		if (f - *start < (UINT64_C(1) << 63))
			*start = f; /* the floor is ahead of where we meant to start */
	}
}

int shmchan_bc_reader_attach(shmchan_channel *ch, uint32_t flags, shmchan_reader **out)
{
	struct shmchan_header *h = ch->hdr;
	struct shmchan_reader_place *p;
	shmchan_reader *r;
	uint64_t head, start, gen;
	uint32_t i;
	int rc = -SHMCHAN_ENOREADERS;

	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	if (ch->reader)
		return -EBUSY; /* one reader per handle: open the channel again for another */
	for (i = 0; i < ch->g.max_readers; i++) {
		rc = shmchan_lock_byte(ch->fd, lock_of_place(i), 1);
		if (rc != -EBUSY)
			break;
	}
	if (rc)
		return rc == -EBUSY ? -SHMCHAN_ENOREADERS : rc;
	p = &ch->places[i];
	r = shmchan_reader_new(ch);
	if (!r) {
		shmchan_unlock_byte(ch->fd, lock_of_place(i));
		return -ENOMEM;
	}
	/* (C) acquire: pairs with (B) */
	head = shmchan_load_acquire64(&h->head);
	if (flags == SHMCHAN_START_OLDEST) {
		/* overwrite: if the writer is rewriting that slot right now, take() skips it */
		start = head < ch->g.capacity ? 0 : head - ch->g.capacity;
	} else {
		start = head ? head - 1 : 0;
	}
	gen = shmchan_read_once64(&p->gen) + 1;
	shmchan_write_once64(&p->cursor, start);
	shmchan_write_once64(&p->gen, gen);
	shmchan_write_once32(&p->pid, (uint32_t)getpid());
	shmchan_write_once64(&p->messages, 0);
	shmchan_write_once64(&p->bytes, 0);
	shmchan_write_once64(&p->lost, 0);
	shmchan_write_once64(&p->empty, 0);
	set_place_state(p, SHMCHAN_PEER_ATTACHED);
	/* (J1) full fence: the place before scan_seq; pairs with (J2) */
	shmchan_fence_seq_cst();
	if (!overwrite(ch)) {
		settle_join(ch, &start);
		if (shmchan_interrupted(ch)) {
			set_place_state(p, SHMCHAN_PEER_CLOSED);
			shmchan_unlock_byte(ch->fd, lock_of_place(i));
			shmchan_reader_free(r);
			return -ECANCELED;
		}
		/* (D2) release: pairs with (E2) */
		shmchan_store_release64(&p->cursor, start);
	}
	/* (C) acquire: pairs with (B) */
	head = shmchan_load_acquire64(&h->head);
	if (start - head < (UINT64_C(1) << 63) && start != head) {
		/* a floor above head: the writer's fields are broken */
		set_place_state(p, SHMCHAN_PEER_CLOSED);
		shmchan_unlock_byte(ch->fd, lock_of_place(i));
		shmchan_reader_free(r);
		return shmchan_poison(ch, "corrupt floor %llu above head %llu", (unsigned long long)start,
				      (unsigned long long)head);
	}
	r->place = p;
	r->place_index = i;
	r->tail = r->read_pos = start;
	r->cached_head = start;
	ch->reader = r;
	*out = r;
	return 0;
}

void shmchan_bc_reader_close(shmchan_reader *r)
{
	shmchan_channel *ch = r->ch;
	struct shmchan_header *h = ch->hdr;

	set_place_state(r->place, SHMCHAN_PEER_CLOSED);
	shmchan_unlock_byte(ch->fd, lock_of_place(r->place_index));
	/* (W) full fence: the state before the flag; pairs with (R) in wait_for_readers */
	shmchan_fence_seq_cst();
	if (shmchan_read_once32(&h->writer_waiting))
		wake_writer(h);
	shmchan_reader_free(r);
}

/* Overwrite policy: the writer lapped us; skip to the oldest position still in the ring. */
static void skip_lapped(shmchan_reader *r, uint64_t *pending_lost)
{
	shmchan_channel *ch = r->ch;
	/* the oldest position the ring may still hold; if the writer is rewriting it right now, the
	   slot's sequence says so and take() skips one more */
	uint64_t to = r->cached_head - ch->g.capacity, n;

	if (to - r->read_pos >= (UINT64_C(1) << 63) || to == r->read_pos)
		to = r->read_pos + 1; /* at least one: the slot we looked at holds something else */
	n = to - r->read_pos;
	r->lost += n;
	*pending_lost += n;
	if (r->read_pos != r->tail) {
		/* messages we handed out and still hold are overwritten too: remember them as such, and
		   count the unreleased ones lost now (their release says -ESTALE and counts nothing) */
		for (uint64_t q = r->tail; q != r->read_pos; q++)
			r->lost += !r->released[q & ch->g.mask];
		/* one range covers every lap's orphans (and the positions skipped between them) */
		if (r->orphan_hi == r->orphan_lo)
			r->orphan_lo = r->tail;
		r->orphan_hi = r->read_pos;
		memset(r->released, 0, ch->g.capacity);
	}
	shmchan_write_once64(&r->place->lost, r->lost);
	r->tail = r->read_pos = to;
	/* (D2) release: pairs with (E2) */
	shmchan_store_release64(&r->place->cursor, to);
}

/* Takes the message at read_pos (head is past it) into *msg; 1 taken, 0 lapped (skipped), or < 0. */
static int take(shmchan_reader *r, struct shmchan_msg *msg, uint64_t *pending_lost)
{
	shmchan_channel *ch = r->ch;
	const uint64_t pos = r->read_pos;
	const uint32_t s = (uint32_t)(pos & ch->g.mask);
	uint64_t seq, len;

	if (overwrite(ch) && r->cached_head - pos > ch->g.capacity) {
		skip_lapped(r, pending_lost); /* position pos + capacity is committed: pos is gone */
		return 0;
	}
	/* (M4) acquire: length and payload of this position; pairs with (M2) */
	seq = shmchan_load_acquire64(&ch->meta[s].seq);
	len = shmchan_read_once64(&ch->meta[s].len);
	if (shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT;
	if (seq != pos + 1 || len > ch->g.slot_size) {
		if (overwrite(ch)) {
			/* (C) acquire: pairs with (B) */
			uint64_t head = shmchan_load_acquire64(&ch->hdr->head);
			if (head != r->cached_head) {
				int rc = shmchan_accept_head(r, head);
				if (rc)
					return rc;
				skip_lapped(r, pending_lost);
				return 0;
			}
			if ((seq == SHMCHAN_SEQ_WRITING || seq == pos + ch->g.capacity + 1) &&
			    pos + ch->g.capacity == head) {
				/* the writer is filling pos's slot right now, or has just published it and
				   not yet moved head on (the slot's (M2) store comes before (B)) */
				skip_lapped(r, pending_lost);
				return 0;
			}
		}
		/* head has not moved, yet the slot holds another position (or a bad length) */
		return shmchan_poison(ch, "corrupt slot %u: sequence %llu, length %llu, expected position %llu", s,
				      (unsigned long long)seq, (unsigned long long)len, (unsigned long long)pos);
	}
	msg->pos = pos;
	msg->len = len;
	msg->slot = s;
	msg->lost = *pending_lost > UINT32_MAX ? UINT32_MAX : (uint32_t)*pending_lost;
	msg->data = ch->data + (uint64_t)s * ch->g.slot_stride;
	*pending_lost = 0;
	r->taken_len[s] = len;
	r->read_pos += 1;
	return 1;
}

/* Whether the reader holds a message in every slot; in overwrite mode first looks whether the
   writer lapped it (which would free those slots: they are overwritten). */
static int pinned(shmchan_reader *r, int *rc)
{
	shmchan_channel *ch = r->ch;

	*rc = 0;
	if (r->read_pos - r->tail < ch->g.capacity)
		return 0;
	if (overwrite(ch)) {
		/* (C) acquire: pairs with (B) */
		*rc = shmchan_accept_head(r, shmchan_load_acquire64(&ch->hdr->head));
		if (*rc == 0 && r->cached_head - r->read_pos > ch->g.capacity)
			return 0; /* lapped: take() skips ahead and lets go of the held messages */
	}
	return 1;
}

int shmchan_bc_peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max, int64_t timeout_ns)
{
	uint64_t pending_lost = 0;
	uint32_t n = 0;
	int rc;

	for (;;) {
		/* after the first message, only what is there already (no wait, no count, no peer check) */
		rc = shmchan_ensure_available(r, n ? SHMCHAN_TRY_NS : timeout_ns);
		if (rc == -EAGAIN && n)
			break;
		if (rc)
			return n && rc == -SHMCHAN_EPINNED ? (int)n : rc;
		while (n < max && r->read_pos != r->cached_head) {
			if (pinned(r, &rc))
				return rc ? rc : n ? (int)n : -SHMCHAN_EPINNED;
			rc = take(r, &msgs[n], &pending_lost);
			if (rc < 0)
				return rc;
			n += (uint32_t)rc;
		}
		if (n == max)
			break;
		if (n && r->read_pos == r->cached_head) {
			/* (C) acquire: more may have come; pairs with (B) */
			uint64_t head = shmchan_load_acquire64(&r->ch->hdr->head);
			if (head == r->cached_head)
				break;
			rc = shmchan_accept_head(r, head);
			if (rc)
				return rc;
		}
	}
	return (int)n;
}

static int orphan(const shmchan_reader *r, uint64_t pos)
{
	return pos - r->orphan_lo < r->orphan_hi - r->orphan_lo;
}

int shmchan_bc_check(shmchan_reader *r, uint64_t pos)
{
	shmchan_channel *ch = r->ch;

	if (orphan(r, pos))
		return -ESTALE;
	if (pos - r->tail >= r->read_pos - r->tail || r->released[pos & ch->g.mask])
		return -EINVAL;
	if (!overwrite(ch))
		return 0;
	/* (M3) acquire fence: the caller's reads of the payload before seq; pairs with (M1) */
	shmchan_fence_acquire();
	return shmchan_read_once64(&ch->meta[pos & ch->g.mask].seq) == pos + 1 ? 0 : -ESTALE;
}

int shmchan_bc_release(shmchan_reader *r, uint64_t pos)
{
	shmchan_channel *ch = r->ch;
	struct shmchan_header *h = ch->hdr;
	uint64_t n = 0, old_tail;
	int stale;

	if (ch->poisoned || shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT;
	stale = shmchan_bc_check(r, pos);
	if (stale == -EINVAL)
		return -EINVAL;
	if (orphan(r, pos))
		return -ESTALE; /* skipped past already: nothing left to release */
	r->released[pos & ch->g.mask] = 1;
	old_tail = r->tail;
	while (r->tail != r->read_pos && r->released[r->tail & ch->g.mask]) {
		r->released[r->tail & ch->g.mask] = 0;
		r->bytes += r->taken_len[r->tail & ch->g.mask];
		r->tail += 1;
		n++;
	}
	if (n) {
		struct shmchan_reader_place *p = r->place;
		r->messages += n;
		/* (D2) release: our reads of the slots before the writer may reuse them; pairs with (E2) */
		shmchan_store_release64(&p->cursor, r->tail);
		shmchan_write_once64(&p->messages, r->messages);
		shmchan_write_once64(&p->bytes, r->bytes);
		if (!overwrite(ch)) {
			/* (W) full fence: the cursor before the flag and `need`; pairs with (R) in
			   wait_for_readers (a writer whose scan missed our cursor stored both before its fence) */
			shmchan_fence_seq_cst();
			if (shmchan_read_once32(&h->writer_waiting) &&
			    shmchan_read_once64(&h->need) - old_tail - 1 < (UINT64_C(1) << 63))
				wake_writer(h); /* we were below what it needs: ours may be the release it waits for */
		}
	}
	if (stale == -ESTALE) {
		r->lost += 1;
		shmchan_write_once64(&r->place->lost, r->lost);
	}
	return stale;
}

int shmchan_bc_recv(shmchan_reader *r, void *buf, uint64_t cap, uint64_t *len, int64_t timeout_ns)
{
	struct shmchan_msg m;
	int rc;

	for (;;) {
		rc = shmchan_bc_peek_batch(r, &m, 1, timeout_ns);
		if (rc < 0)
			return rc;
		*len = m.len;
		if (m.len > cap) {
			r->read_pos -= 1; /* give it back untouched: the caller may retry with a larger buffer */
			return -EMSGSIZE;
		}
		if (m.len)
			memcpy(buf, m.data, (size_t)m.len);
		rc = shmchan_check_truncated(r->ch);
		if (rc)
			return rc;
		rc = shmchan_bc_release(r, m.pos);
		if (rc != -ESTALE)
			return rc; /* a torn copy is never returned: it counts as lost and we take the next */
	}
}

/* Non-consuming look at position pos (broadcast) or the newest value (state, pos = its version). */
int shmchan_bc_inspect(shmchan_channel *ch, uint64_t pos, void *buf, uint64_t cap, uint64_t *len, uint64_t *first,
		       uint64_t *end)
{
	/* (C) acquire: pairs with (B) */
	uint64_t head = shmchan_load_acquire64(&ch->hdr->head), seq, n, want;
	uint32_t s;

	if (ch->g.kind == SHMCHAN_KIND_STATE) {
		*first = head;
		*end = head ? head + 1 : 0;
		want = pos;
		s = (uint32_t)(pos & 1);
	} else {
		*first = head < ch->g.capacity ? 0 : head - ch->g.capacity; /* as a lapped reader resumes */
		*end = head;
		want = pos + 1;
		s = (uint32_t)(pos & ch->g.mask);
	}
	if (shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT;
	if (pos - *first >= *end - *first)
		return -ENOENT;
	/* (M4) acquire: pairs with (M2) */
	seq = shmchan_load_acquire64(&ch->meta[s].seq);
	n = shmchan_read_once64(&ch->meta[s].len);
	if (seq != want || n > ch->g.slot_size)
		return -ESTALE; /* rewritten already (a broken length also never survives the re-check) */
	*len = n;
	if (n > cap)
		return -EMSGSIZE;
	if (n)
		memcpy(buf, ch->data + (uint64_t)s * ch->g.slot_stride, (size_t)n); /* buf may be NULL */
	/* (M3) acquire fence: the copy before seq again; pairs with (M1) */
	shmchan_fence_acquire();
	if (shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT;
	return shmchan_read_once64(&ch->meta[s].seq) == want ? 0 : -ESTALE;
}

int shmchan_reader_places(const shmchan_channel *ch, struct shmchan_place_info *out, uint32_t max)
{
	if (!ch || (!out && max))
		return -EINVAL;
	if (ch->g.kind != SHMCHAN_KIND_BROADCAST)
		return 0;
	for (uint32_t i = 0; i < ch->g.max_readers && i < max; i++) {
		const struct shmchan_reader_place *p = &ch->places[i];
		struct shmchan_place_info *o = &out[i];
		memset(o, 0, sizeof(*o));
		o->index = i;
		/* a snapshot for people: relaxed reads */
		o->state = shmchan_read_once32(&p->state);
		o->pid = shmchan_read_once32(&p->pid);
		o->cursor = shmchan_read_once64(&p->cursor);
		o->messages = shmchan_read_once64(&p->messages);
		o->bytes = shmchan_read_once64(&p->bytes);
		o->lost = shmchan_read_once64(&p->lost);
		o->empty_waits = shmchan_read_once64(&p->empty);
		if (o->state == SHMCHAN_PEER_ATTACHED)
			o->alive = shmchan_bc_place_alive(ch, i);
	}
	return (int)ch->g.max_readers;
}

int shmchan_wait_head_spin(shmchan_channel *ch, uint64_t pos, int64_t spin_ns, int64_t timeout_ns)
{
	struct shmchan_header *h;
	int spsc;
	uint32_t seq;
	int64_t start, deadline;
	int rc = 0;

	if (!ch)
		return -EINVAL;
	h = ch->hdr;
	spsc = ch->g.kind == SHMCHAN_KIND_SPSC;
	start = timeout_ns == 0 ? 0 : shmchan_now_ns();
	deadline = shmchan_deadline(start, timeout_ns);
	if (timeout_ns != 0 && spin_ns > 0) {
		const int64_t spin = shmchan_deadline(start, spin_ns);
		const int64_t spin_end = spin < deadline ? spin : deadline;
		const int64_t polite = start + shmchan_channel_polite_ns(ch);
		int64_t now;
		do {
			for (int i = 0; i < 32; i++) {
				/* (C) acquire: pairs with (B) */
				if (shmchan_load_acquire64(&h->head) != pos)
					return 0;
				shmchan_cpu_relax();
			}
			if (shmchan_interrupted(ch))
				return -ECANCELED;
			now = shmchan_now_ns();
			if (now >= polite)
				sched_yield();
		} while (now < spin_end);
		if (timeout_ns > 0 && now >= deadline)
			return -ETIMEDOUT; /* spun for the whole timeout: no sleep, no flag */
	}
	/* SPSC: the one reader's flag, as its own waits set it; the other kinds count their sleepers */
	if (spsc)
		shmchan_write_once32(&h->reader_waiting, 1);
	else
		shmchan_fetch_add32(&h->reader_waiting, 1);
	/* (R) full fence: flag or count before the re-check; pairs with (W) */
	shmchan_fence_seq_cst();
	/* (G) acquire: pairs with (F) */
	seq = shmchan_load_acquire32(&h->head_wake);
	if (shmchan_interrupted(ch)) {
		rc = -ECANCELED;
	} else if (timeout_ns != 0) {
		/* (C) acquire: pairs with (B) */
		if (shmchan_load_acquire64(&h->head) == pos) {
			int64_t left = timeout_ns < 0 ? -1 : deadline - shmchan_now_ns();
			if (timeout_ns > 0 && left <= 0)
				rc = -ETIMEDOUT;
			else
				rc = shmchan_futex_wait(&h->head_wake, seq, left);
			if (shmchan_interrupted(ch))
				rc = -ECANCELED; /* that wake-up (or a later one) was shmchan_interrupt's */
		}
	}
	if (spsc)
		shmchan_write_once32(&h->reader_waiting, 0);
	else
		shmchan_fetch_sub32(&h->reader_waiting, 1);
	return rc == -ETIMEDOUT || rc == -EINTR || rc == -ECANCELED ? rc : 0;
}

int shmchan_wait_head(shmchan_channel *ch, uint64_t pos, int64_t timeout_ns)
{
	if (!ch || timeout_ns < 0)
		return -EINVAL;
	return shmchan_wait_head_spin(ch, pos, 0, timeout_ns);
}

void shmchan_wake_head(shmchan_channel *ch)
{
	if (ch)
		shmchan_futex_wake_all(&ch->hdr->head_wake);
}

void shmchan_interrupt(shmchan_channel *ch)
{
	if (!ch)
		return;
	/* a flag of this process only: the waits of this handle look at it before each sleep and
	   between spin rounds; the wake-ups below end the sleeps already under way */
	shmchan_write_once32(&ch->interrupted, 1);
	shmchan_futex_wake_all(&ch->hdr->head_wake);
	shmchan_futex_wake_all(&ch->hdr->tail_wake);
}
