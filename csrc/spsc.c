/* SPDX-License-Identifier: MIT */
/* The SPSC kind: one writer, one reader, a lossless ring of slots with a table of lengths. */
#include <errno.h>
#include <string.h>

#include "internal.h"

/*
 * Barriers (docs/protocol.md has the same table):
 *   (A) writer: store of lens[slot], ordered before (B)
 *   (B) writer release of head (shmchan_publish)  pairs with (C) reader acquire of head
 *   (D) reader release of tail            pairs with (E) writer acquire of tail
 *   (K) inspector: acquire fence after its copy, before it loads tail again (a seqlock re-check)
 * The event counts (F)/(G) and the sleep flags (W)/(R) are wait.c's; (L0)-(L2) liveness.c's.
 */

/* ---- writer ---- */

/* The positions a new writer found: a dead predecessor may have left anything there. */
static int spsc_writer_attach(shmchan_writer *w)
{
	shmchan_channel *ch = w->ch;

	if (w->head - w->cached_tail > ch->g.capacity)
		return shmchan_poison(ch, "corrupt positions at writer attach: head %llu, tail %llu, capacity %u",
				      (unsigned long long)w->head, (unsigned long long)w->cached_tail,
				      ch->g.capacity);
	return 0;
}

static int spsc_reserve(shmchan_writer *w, int64_t timeout_ns, int continuing)
{
	shmchan_channel *ch = w->ch;
	struct shmchan_header *h = ch->hdr;
	uint64_t tail;
	int rc;

	if (w->head - w->cached_tail >= ch->g.capacity) {
		/* (E) acquire: the reader is done with the slot before we overwrite it; pairs with (D) */
		tail = shmchan_load_acquire64(&h->tail);
		if (w->head - tail >= ch->g.capacity) {
			const struct shmchan_waiter wt = {
				.ch = ch,
				.watched = &h->tail,
				.stale = w->head - ch->g.capacity,
				.watch_peer = shmchan_watch_reader,
				.arg = ch,
				.wake_word = &h->tail_wake,
				.my_flag = &h->writer_waiting,
				.spin_ns = w->spin_ns,
				.polite_ns = w->polite_ns,
				.cancel = &w->interrupted,
			};
			if (timeout_ns == SHMCHAN_TRY_NS)
				return -EAGAIN;
			if (!continuing)
				shmchan_write_once64(&h->w_full, ++w->full);
			rc = shmchan_wait(&wt, timeout_ns, &tail);
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
	return (int)(w->head & ch->g.mask);
}

static int spsc_commit(shmchan_writer *w, uint64_t nbytes)
{
	shmchan_channel *ch = w->ch;

	/* (A) the length; ordered before head by (B) */
	shmchan_write_once64(&ch->lens[w->slot], nbytes);
	if (shmchan_syncs_commits(ch))
		shmchan_sync_slot(ch, w->slot, nbytes);
	return shmchan_publish(w, nbytes);
}

/* ---- reader ---- */

static int spsc_reader_attach(shmchan_channel *ch, uint32_t flags, shmchan_reader **out)
{
	struct shmchan_header *h = ch->hdr;
	shmchan_reader *r;
	uint64_t head, tail;
	int rc;

	(void)flags; /* an SPSC reader always continues where the last one stopped */
	rc = shmchan_lock_byte(ch->fd, SHMCHAN_LOCK_READER, 1);
	if (rc)
		return rc;
	/* Our own position: nobody else moves it while we hold the lock. The writer's keeps moving. */
	tail = shmchan_read_once64(&h->tail);
	/* (C) acquire: pairs with (B) */
	head = shmchan_load_acquire64(&h->head);
	if (head - tail > ch->g.capacity) {
		shmchan_unlock_byte(ch->fd, SHMCHAN_LOCK_READER);
		return shmchan_poison(ch, "corrupt positions at reader attach: head %llu, tail %llu, capacity %u",
				      (unsigned long long)head, (unsigned long long)tail, ch->g.capacity);
	}
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
	r->empty_count = &h->r_empty;
	r->wake_seq = shmchan_read_once32(&h->tail_wake);
	shmchan_peer_announce(ch, 0);
	*out = r;
	return 0;
}

static void spsc_reader_close(shmchan_reader *r)
{
	/* Unreleased messages are not released: a new reader gets them again (at-least-once). */
	shmchan_peer_leave(r->ch, 0);
	shmchan_unlock_byte(r->ch->fd, SHMCHAN_LOCK_READER);
	shmchan_reader_free(r);
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
	msg->data = shmchan_slot_data(ch, s);
	r->taken_len[s] = len;
	r->read_pos += 1;
	return 0;
}

static int spsc_peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max, int64_t timeout_ns)
{
	uint32_t n = 0;
	int rc;

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

static int spsc_check(shmchan_reader *r, uint64_t pos)
{
	return shmchan_outstanding(r, pos) ? 0 : -EINVAL;
}

static int spsc_release(shmchan_reader *r, uint64_t pos)
{
	shmchan_channel *ch = r->ch;
	struct shmchan_header *h = ch->hdr;

	if (ch->poisoned || shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT; /* what the caller read from the slot cannot be trusted */
	if (!shmchan_outstanding(r, pos))
		return -EINVAL;
	if (shmchan_reader_advance(r, pos) == 0)
		return 0; /* an earlier message is still held: this one goes back with it */
	/* (D) release: our reads of the slots before the writer may reuse them; pairs with (E) */
	shmchan_store_release64(&h->tail, r->tail);
	shmchan_write_once64(&h->r_messages, r->messages);
	shmchan_write_once64(&h->r_bytes, r->bytes);
	shmchan_notify(&h->tail_wake, &r->wake_seq, &h->writer_waiting, 0);
	return 0;
}

/* ---- any handle ---- */

static int spsc_inspect(shmchan_channel *ch, uint64_t pos, void *buf, uint64_t cap, uint64_t *len, uint64_t *first,
			uint64_t *end)
{
	struct shmchan_header *h = ch->hdr;
	uint64_t head, tail, n;
	uint32_t s;

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
		memcpy(buf, shmchan_slot_data(ch, s), (size_t)n);
	/* (K) acquire fence: the copy above completes before tail is read again (a seqlock re-check) */
	shmchan_fence_acquire();
	if (shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT;
	/* the writer rewrites slot s only after tail passes pos: if it did, the copy may be torn */
	if (shmchan_read_once64(&h->tail) - tail > pos - tail)
		return -ESTALE;
	return 0;
}

const struct shmchan_kind_ops shmchan_spsc_ops = {
	.name = "spsc",
	.counted_sleepers = 0,
	.writer_attach = spsc_writer_attach,
	.reserve = spsc_reserve,
	.commit = spsc_commit,
	.reader_attach = spsc_reader_attach,
	.reader_close = spsc_reader_close,
	.peek_batch = spsc_peek_batch,
	.release = spsc_release,
	.check = spsc_check,
	.inspect = spsc_inspect,
};
