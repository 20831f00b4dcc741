/* SPDX-License-Identifier: MIT */
/* The BROADCAST kind: one writer, many readers that each see every message, block or overwrite. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/*
 * Barriers (docs/protocol.md has the same table), in addition to (B)/(C) on head, (F)/(G) on the
 * event counts and (W)/(R) on the sleeper counts, which work as for SPSC channels, and (M1)/(M2),
 * the writer's side of the slot sequence (shmchan_stamp_slot, shmchan_publish_stamped):
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

#define JOIN_SPIN_NS 10000000 /* 10 ms: a writer's scan takes microseconds; then look for a dead one */
#define JOIN_GIVE_UP_NS 1000000000 /* 1 s: a live writer scanning that long is stopped or broken */
#define JOIN_NAP_NS 1000000        /* past the spin, look every 1 ms (a signal ends the nap) */

static int lock_of_place(uint32_t i)
{
	return SHMCHAN_LOCK_READERS + (int)i;
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
		if (w->dead[i].known && w->dead[i].gen == gen)
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

static int bcast_writer_attach(shmchan_writer *w)
{
	shmchan_channel *ch = w->ch;
	struct shmchan_header *h = ch->hdr;
	uint64_t floor;

	if (w->head >= SHMCHAN_MAX_POSITION)
		return shmchan_poison(ch, "corrupt head %llu at writer attach (positions stay below 2^63)",
				      (unsigned long long)w->head);
	w->dead = calloc(ch->g.max_readers, sizeof(*w->dead));
	if (!w->dead)
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

static void bcast_writer_close(shmchan_writer *w)
{
	free(w->dead);
	w->dead = NULL;
}

/* Reader places whose owner died hold the writer back no more (each found once per generation):
   how many it found. */
static int bury_dead_blockers(void *arg)
{
	shmchan_writer *w = arg;
	shmchan_channel *ch = w->ch;
	int buried = 0;

	for (uint32_t i = 0; i < ch->g.max_readers; i++) {
		struct shmchan_reader_place *p = &ch->places[i];
		uint64_t g1, c;
		/* (L3) acquire: pairs with (L0) */
		if (shmchan_load_acquire32(&p->state) != SHMCHAN_PEER_ATTACHED)
			continue;
		g1 = shmchan_read_once64(&p->gen);
		/* (E2) acquire: pairs with (D2) */
		c = shmchan_load_acquire64(&p->cursor);
		if ((w->dead[i].known && w->dead[i].gen == g1) || w->head - c < ch->g.capacity)
			continue; /* not the one we wait for */
		if (shmchan_place_alive(ch, i))
			continue;
		/* (L3) acquire: a joiner that took the place meanwhile changed the generation */
		if (shmchan_load_acquire32(&p->state) == SHMCHAN_PEER_ATTACHED && shmchan_read_once64(&p->gen) == g1) {
			w->dead[i].gen = g1;
			w->dead[i].known = 1;
			buried++;
		}
	}
	return buried;
}

static int full(const shmchan_writer *w)
{
	return w->head - w->cached_tail >= w->ch->g.capacity;
}

/* What a blocked writer waits for: a scan that finds a free slot. */
static int slot_free(void *arg)
{
	shmchan_writer *w = arg;

	scan(w);
	return !full(w);
}

/* Waits (block policy) until the slowest live reader frees a slot. */
static int wait_for_readers(shmchan_writer *w, int64_t timeout_ns)
{
	shmchan_channel *ch = w->ch;
	struct shmchan_header *h = ch->hdr;
	const struct shmchan_waiter wt = {
		.ch = ch,
		.ready = slot_free,
		.watch_peer = bury_dead_blockers,
		.arg = w,
		.wake_word = &h->tail_wake,
		.my_flag = &h->writer_waiting,
		.spin_ns = w->spin_ns,
		.polite_ns = w->polite_ns,
		.cancel = &w->interrupted,
	};

	/* only a reader below this can free the slot we wait for: the others need not wake us (they
	   read it only while writer_waiting is set, which the wait stores after this) */
	shmchan_write_once64(&h->need, w->head - ch->g.capacity + 1);
	return shmchan_wait(&wt, timeout_ns, NULL);
}

static int bcast_reserve(shmchan_writer *w, int64_t timeout_ns, int continuing)
{
	shmchan_channel *ch = w->ch;
	uint32_t s;
	int rc;

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
	shmchan_stamp_slot(ch, s);
	return (int)s;
}

static int bcast_commit(shmchan_writer *w, uint64_t nbytes)
{
	return shmchan_publish_stamped(w, nbytes, w->head + 1);
}

/* ---- reader ---- */

static void set_place_state(struct shmchan_reader_place *p, uint32_t v)
{
	/* (L0) release: pid, generation and cursor before the state; pairs with (L3) */
	shmchan_store_release32(&p->state, v);
}

/*
 * Raises a joiner's start to the floor of every writer scan that may have missed its place. An odd
 * scan_seq that stays odd is a writer that died scanning (then the next writer scans afresh: go
 * on), or a live writer that is stopped, broken or hostile, or a peer that wrote scan_seq: past
 * JOIN_GIVE_UP_NS that is -ETIMEDOUT, a signal ends the wait with -EINTR and shmchan_interrupt
 * with -ECANCELED, so a join never spins for ever. 0 when settled.
 */
/* Waits while a scan runs (scan_seq odd); mask: the caller's signal mask, signals held meanwhile. */
static int wait_scan(shmchan_channel *ch, const sigset_t *mask)
{
	struct shmchan_header *h = ch->hdr;
	const int64_t t0 = shmchan_now_ns();

	for (;;) {
		/* (J4) acquire: an even scan_seq comes with that scan's floor; pairs with (J3) */
		uint64_t sseq = shmchan_load_acquire64(&h->scan_seq);
		int64_t waited;
		if (!(sseq & 1))
			return 0;
		/* a scan is running; it takes microseconds unless its writer died (or stopped) in it */
		if (shmchan_interrupted(ch))
			return -ECANCELED; /* the handle is going away */
		waited = shmchan_now_ns() - t0;
		if (waited < JOIN_SPIN_NS) {
			sched_yield();
			continue;
		}
		{
			/* (L1) acquire: pairs with (L0) in liveness.c */
			uint32_t ws = shmchan_load_acquire32(&h->writer_state);
			if (!shmchan_peer_alive(ch, 1) || ws != SHMCHAN_PEER_ATTACHED)
				return 0; /* no live writer: the next one scans afresh, from its floor */
		}
		if (waited >= JOIN_GIVE_UP_NS) {
			shmchan_note(ch, "the writer has been scanning the reader places for over %d ms (scan_seq "
				     "%llu stays odd): it is stopped or broken, or a peer wrote scan_seq",
				     JOIN_GIVE_UP_NS / 1000000, (unsigned long long)sseq);
			return -ETIMEDOUT;
		}
		if (shmchan_nap(JOIN_NAP_NS, mask))
			return -EINTR; /* a signal came, at any time since the wait began */
	}
}

static int settle_join(shmchan_channel *ch, uint64_t *start)
{
	uint64_t f;

	/* (J4) acquire: an even scan_seq comes with that scan's floor; pairs with (J3) */
	if (shmchan_load_acquire64(&ch->hdr->scan_seq) & 1) {
		/* a scan runs: wait with asynchronous signals held, so none is missed between naps (no
		   system call on the common path, where no scan runs) */
		sigset_t mask;
		int rc;

		shmchan_signals_hold(&mask);
		rc = wait_scan(ch, &mask);
		shmchan_signals_restore(&mask);
		if (rc)
			return rc;
	}
	/* that scan's floor; after a writer died scanning, the floor the next one starts from (it
	   clamps our cursor up to it) */
	f = shmchan_read_once64(&ch->hdr->floor);
	if (f - *start < (UINT64_C(1) << 63))
		*start = f; /* the floor is ahead of where we meant to start */
	return 0;
}

static int bcast_reader_attach(shmchan_channel *ch, uint32_t flags, shmchan_reader **out)
{
	struct shmchan_header *h = ch->hdr;
	struct shmchan_reader_place *p;
	shmchan_reader *r;
	uint64_t head, start, gen;
	uint32_t i;
	int rc = -SHMCHAN_ENOREADERS;

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
	if (head >= SHMCHAN_MAX_POSITION) {
		shmchan_unlock_byte(ch->fd, lock_of_place(i));
		shmchan_reader_free(r);
		return shmchan_poison(ch, "corrupt head %llu at reader attach (positions stay below 2^63)",
				      (unsigned long long)head);
	}
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
		rc = settle_join(ch, &start);
		if (rc) {
			set_place_state(p, SHMCHAN_PEER_CLOSED);
			shmchan_unlock_byte(ch->fd, lock_of_place(i));
			shmchan_reader_free(r);
			return rc;
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
	r->empty_count = &p->empty;
	r->may_be_lapped = overwrite(ch);
	r->tail = r->read_pos = start;
	r->cached_head = start;
	*out = r;
	return 0;
}

static void bcast_reader_close(shmchan_reader *r)
{
	shmchan_channel *ch = r->ch;
	struct shmchan_header *h = ch->hdr;

	set_place_state(r->place, SHMCHAN_PEER_CLOSED);
	shmchan_unlock_byte(ch->fd, lock_of_place(r->place_index));
	/* (W) full fence: the state before the flag; pairs with (R) in the writer's wait */
	shmchan_fence_seq_cst();
	if (shmchan_read_once32(&h->writer_waiting))
		shmchan_notify_shared(&h->tail_wake);
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
	msg->data = shmchan_slot_data(ch, s);
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

static int bcast_peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max, int64_t timeout_ns)
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

static int bcast_check(shmchan_reader *r, uint64_t pos)
{
	shmchan_channel *ch = r->ch;

	if (orphan(r, pos))
		return -ESTALE;
	if (!shmchan_outstanding(r, pos))
		return -EINVAL;
	if (!overwrite(ch))
		return 0;
	/* (M3) acquire fence: the caller's reads of the payload before seq; pairs with (M1) */
	shmchan_fence_acquire();
	return shmchan_read_once64(&ch->meta[pos & ch->g.mask].seq) == pos + 1 ? 0 : -ESTALE;
}

static int bcast_release(shmchan_reader *r, uint64_t pos)
{
	shmchan_channel *ch = r->ch;
	struct shmchan_header *h = ch->hdr;
	const uint64_t old_tail = r->tail;
	int stale;

	if (ch->poisoned || shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT;
	stale = bcast_check(r, pos);
	if (stale == -EINVAL)
		return -EINVAL;
	if (orphan(r, pos))
		return -ESTALE; /* skipped past already: nothing left to release */
	if (shmchan_reader_advance(r, pos)) {
		struct shmchan_reader_place *p = r->place;
		/* (D2) release: our reads of the slots before the writer may reuse them; pairs with (E2) */
		shmchan_store_release64(&p->cursor, r->tail);
		shmchan_write_once64(&p->messages, r->messages);
		shmchan_write_once64(&p->bytes, r->bytes);
		if (!overwrite(ch)) {
			/* (W) full fence: the cursor before the flag and `need`; pairs with (R) in the
			   writer's wait (a writer whose scan missed our cursor stored both before its fence) */
			shmchan_fence_seq_cst();
			if (shmchan_read_once32(&h->writer_waiting) &&
			    shmchan_read_once64(&h->need) - old_tail - 1 < (UINT64_C(1) << 63))
				shmchan_notify_shared(&h->tail_wake); /* we were below what it needs: ours may be
									  the release it waits for */
		}
	}
	if (stale == -ESTALE) {
		r->lost += 1;
		shmchan_write_once64(&r->place->lost, r->lost);
	}
	return stale;
}

/* ---- any handle ---- */

/* Non-consuming look at position pos. */
static int bcast_inspect(shmchan_channel *ch, uint64_t pos, void *buf, uint64_t cap, uint64_t *len, uint64_t *first,
			 uint64_t *end)
{
	/* (C) acquire: pairs with (B) */
	uint64_t head = shmchan_load_acquire64(&ch->hdr->head);
	const uint32_t s = (uint32_t)(pos & ch->g.mask);

	*first = head < ch->g.capacity ? 0 : head - ch->g.capacity; /* as a lapped reader resumes */
	*end = head;
	if (shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT;
	if (pos - *first >= *end - *first)
		return -ENOENT;
	return shmchan_inspect_stamped(ch, s, pos + 1, buf, cap, len);
}

/* Readers live in their places: tail is the slowest live reader's cursor (a dead one holds nobody
   back), the reader counters sum over the places. */
static void bcast_stats(const shmchan_channel *ch, struct shmchan_stats *out)
{
	uint64_t lowest = out->head;
	int any_alive = 0;

	for (uint32_t i = 0; i < ch->g.max_readers; i++) {
		const struct shmchan_reader_place *p = &ch->places[i];
		uint32_t st = shmchan_read_once32(&p->state);
		uint64_t c = shmchan_read_once64(&p->cursor);
		out->messages_read += shmchan_read_once64(&p->messages);
		out->bytes_read += shmchan_read_once64(&p->bytes);
		out->empty_waits += shmchan_read_once64(&p->empty);
		if (st == SHMCHAN_PEER_ATTACHED) {
			out->reader_state = st;
			if (!shmchan_place_alive(ch, i))
				continue;
			if (!any_alive)
				out->reader_pid = shmchan_read_once32(&p->pid);
			any_alive = 1;
			if (out->head - c > out->head - lowest)
				lowest = c;
		}
	}
	out->tail = lowest;
	out->reader_alive = any_alive;
}

static int bcast_places(const shmchan_channel *ch, struct shmchan_place_info *out, uint32_t max)
{
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
			o->alive = shmchan_place_alive(ch, i);
	}
	return (int)ch->g.max_readers;
}

const struct shmchan_kind_ops shmchan_bcast_ops = {
	.name = "broadcast",
	.counted_sleepers = 1,
	.writer_attach = bcast_writer_attach,
	.writer_close = bcast_writer_close,
	.reserve = bcast_reserve,
	.commit = bcast_commit,
	.reader_attach = bcast_reader_attach,
	.reader_close = bcast_reader_close,
	.peek_batch = bcast_peek_batch,
	.release = bcast_release,
	.check = bcast_check,
	.inspect = bcast_inspect,
	.stats = bcast_stats,
	.places = bcast_places,
};
