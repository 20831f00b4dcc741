/* SPDX-License-Identifier: MIT */
/* The reader side: the bookkeeping the ring kinds share (positions, waiting for head); stamped slots. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/*
 * Barriers (docs/protocol.md has the table):
 *   (C) acquire of head                         pairs with (B), the writer's release of it
 *   (M4) acquire of a slot's seq, then its len   pairs with (M2), the writer's release of seq
 *   (M3) acquire fence after a copy, then seq    pairs with (M1), the writer's stamp and fence
 */

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

void shmchan_reader_free(shmchan_reader *r)
{
	if (r->ch->reader == r)
		r->ch->reader = NULL;
	free(r->released);
	free(r->taken_len);
	free(r);
}

/*
 * head is the writer's: check it before caching it. It never lies behind what we took; and unless
 * the writer may lap us (broadcast, overwrite policy), never more than capacity past our tail.
 */
int shmchan_accept_head(shmchan_reader *r, uint64_t head)
{
	shmchan_channel *ch = r->ch;

	if (head - r->read_pos >= (UINT64_C(1) << 63) || (!r->may_be_lapped && head - r->tail > ch->g.capacity))
		return shmchan_poison(ch, "corrupt head %llu for tail %llu, read position %llu (capacity %u)",
				      (unsigned long long)head, (unsigned long long)r->tail,
				      (unsigned long long)r->read_pos, ch->g.capacity);
	r->cached_head = head;
	return 0;
}

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
		/* readers of a kind with counted sleepers share head_wake and count themselves */
		const struct shmchan_waiter wt = {
			.ch = ch,
			.watched = &h->head,
			.stale = r->read_pos,
			.watch_peer = shmchan_watch_writer,
			.arg = ch,
			.wake_word = &h->head_wake,
			.my_flag = &h->reader_waiting,
			.counted = ch->ops->counted_sleepers,
			.ends_on_close = 1,
			.spin_ns = r->spin_ns,
			.polite_ns = r->polite_ns,
		};
		if (r->read_pos - r->tail == ch->g.capacity)
			return -SHMCHAN_EPINNED; /* the writer cannot go on until we release something */
		if (timeout_ns == SHMCHAN_TRY_NS)
			return -EAGAIN;
		if (!continuing)
			shmchan_write_once64(r->empty_count, ++r->empty);
		rc = shmchan_wait(&wt, timeout_ns, &head);
		if (rc)
			return rc;
		rc = shmchan_check_truncated(ch);
		if (rc)
			return rc;
	}
	return shmchan_accept_head(r, head); /* head != read_pos here: a wait only ends on a change */
}

uint64_t shmchan_reader_advance(shmchan_reader *r, uint64_t pos)
{
	const uint32_t mask = r->ch->g.mask;
	uint64_t n = 0;

	r->released[pos & mask] = 1;
	while (r->tail != r->read_pos && r->released[r->tail & mask]) {
		r->released[r->tail & mask] = 0;
		r->bytes += r->taken_len[r->tail & mask];
		r->tail += 1;
		n++;
	}
	r->messages += n;
	return n;
}

int shmchan_inspect_stamped(shmchan_channel *ch, uint32_t s, uint64_t want, void *buf, uint64_t cap, uint64_t *len)
{
	/* (M4) acquire: pairs with (M2) */
	uint64_t seq = shmchan_load_acquire64(&ch->meta[s].seq);
	uint64_t n = shmchan_read_once64(&ch->meta[s].len);

	if (seq != want || n > ch->g.slot_size)
		return -ESTALE; /* rewritten already (a broken length also never survives the re-check) */
	*len = n;
	if (n > cap)
		return -EMSGSIZE;
	if (n)
		memcpy(buf, shmchan_slot_data(ch, s), (size_t)n); /* buf may be NULL */
	/* (M3) acquire fence: the copy before seq again; pairs with (M1) */
	shmchan_fence_acquire();
	if (shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT;
	return shmchan_read_once64(&ch->meta[s].seq) == want ? 0 : -ESTALE;
}
