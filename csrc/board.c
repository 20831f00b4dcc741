/* SPDX-License-Identifier: MIT */
/* The STATE kind: a board of two slots holding the newest value and its version; never torn. */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "internal.h"

/*
 * Barriers (docs/protocol.md has the same table), in addition to (B)/(C) on head (the version)
 * and (F)/(G), (W)/(R) on the sleepers, and (M1)/(M2), the writer's side of the slot sequence
 * (shmchan_stamp_slot, shmchan_publish_stamped):
 *   (M3) reader: acquire fence after copying the value, then seq again   pairs with (M1)
 *   (M4) reader: acquire load of seq before trusting length and value    pairs with (M2)
 *
 * Version v lives in slot v & 1. The writer fills the slot of the next version while readers are
 * sent to the other one, so a reader is disturbed only by two publishes during one copy.
 */

#define READ_TRIES 10000

static uint32_t slot_of(uint64_t version)
{
	return (uint32_t)(version & 1);
}

/* ---- writer ---- */

/* The version a new writer continues from: a dead predecessor or a peer may have left anything. */
static int board_writer_attach(shmchan_writer *w)
{
	if (w->head >= SHMCHAN_MAX_POSITION)
		return shmchan_poison(w->ch, "corrupt version %llu at writer attach (versions stay below 2^63)",
				      (unsigned long long)w->head);
	return 0;
}

static int board_reserve(shmchan_writer *w, int64_t timeout_ns, int continuing)
{
	/* the next version goes to the slot readers are not being sent to */
	const uint32_t s = slot_of(w->head + 1);
	int rc = shmchan_check_truncated(w->ch);

	(void)timeout_ns; /* a board never makes its writer wait */
	(void)continuing;
	if (rc)
		return rc;
	shmchan_stamp_slot(w->ch, s);
	return (int)s;
}

static int board_commit(shmchan_writer *w, uint64_t nbytes)
{
	return shmchan_publish_stamped(w, nbytes, w->head + 1);
}

/* ---- readers: any handle ---- */

static uint64_t board_version(const shmchan_channel *ch)
{
	/* (C) acquire: pairs with (B) */
	return shmchan_load_acquire64(&ch->hdr->head);
}

static int board_read(shmchan_channel *ch, void *buf, uint64_t cap, uint64_t *len, uint64_t *version)
{
	for (int tries = 0; tries < READ_TRIES; tries++) {
		/* (C) acquire: pairs with (B) */
		uint64_t v = shmchan_load_acquire64(&ch->hdr->head), n;
		uint32_t s = slot_of(v);
		int rc = shmchan_check_truncated(ch);

		if (rc)
			return rc;
		*version = v;
		if (v == 0)
			return -ENODATA;
		if (v >= SHMCHAN_MAX_POSITION)
			return shmchan_poison(ch, "corrupt version %llu (versions stay below 2^63)", (unsigned long long)v);
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
			memcpy(buf, shmchan_slot_data(ch, s), (size_t)n); /* buf may be NULL */
		/* (M3) acquire fence: the copy completes before seq is read again; pairs with (M1) */
		shmchan_fence_acquire();
		if (shmchan_read_once64(&ch->meta[s].seq) != v)
			continue; /* torn: the writer started rewriting the slot during the copy */
		return shmchan_check_truncated(ch);
	}
	return -EBUSY;
}

static int board_wait(shmchan_channel *ch, uint64_t version, int64_t timeout_ns, uint64_t *now_version)
{
	struct shmchan_header *h = ch->hdr;
	/* no spinning; the writer closing ends nothing: a board waits for its next writer */
	const struct shmchan_waiter wt = {
		.ch = ch,
		.watched = &h->head,
		.stale = version,
		.watch_peer = shmchan_watch_writer,
		.arg = ch,
		.wake_word = &h->head_wake,
		.my_flag = &h->reader_waiting,
		.counted = 1,
	};
	int rc = shmchan_wait(&wt, timeout_ns, now_version);

	return rc ? rc : shmchan_check_truncated(ch);
}

/* Non-consuming look at the newest value (pos = its version). */
static int board_inspect(shmchan_channel *ch, uint64_t pos, void *buf, uint64_t cap, uint64_t *len, uint64_t *first,
			 uint64_t *end)
{
	/* (C) acquire: pairs with (B) */
	uint64_t head = shmchan_load_acquire64(&ch->hdr->head);
	const uint32_t s = slot_of(pos);

	*first = head;
	*end = head ? head + 1 : 0;
	if (shmchan_check_truncated(ch))
		return -SHMCHAN_ECORRUPT;
	if (pos - *first >= *end - *first)
		return -ENOENT;
	return shmchan_inspect_stamped(ch, s, pos, buf, cap, len);
}

/* A board has no reader handles: nothing is outstanding, tail is head. */
static void board_stats(const shmchan_channel *ch, struct shmchan_stats *out)
{
	(void)ch;
	out->tail = out->head;
}

const struct shmchan_kind_ops shmchan_board_ops = {
	.name = "state",
	.counted_sleepers = 1,
	.writer_attach = board_writer_attach,
	.reserve = board_reserve,
	.commit = board_commit,
	.inspect = board_inspect,
	.stats = board_stats,
	.state_read = board_read,
	.state_version = board_version,
	.state_wait = board_wait,
};
