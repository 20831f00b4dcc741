/* SPDX-License-Identifier: MIT */
/* The writer's side every kind shares: attach and detach, publishing a position, msync after commit. */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "internal.h"

/*
 * Barriers (docs/protocol.md has the table):
 *   (B) release of head after the slot's payload and length   pairs with (C), the readers' acquire
 *   (E) acquire of tail when the writer attaches              pairs with (D), the reader's release
 *   (M1) seq = WRITING, then a release fence, then the payload pairs with (M3), the reader's re-check
 *   (M2) release of seq = position + 1 after payload and len  pairs with (M4), the reader's acquire
 *   (F)/(W) in shmchan_notify (wait.c); (L0) in shmchan_peer_announce/leave (liveness.c)
 */

int shmchan_writer_open(shmchan_channel *ch, shmchan_writer **out)
{
	struct shmchan_header *h = ch->hdr;
	shmchan_writer *w;
	int rc = shmchan_lock_byte(ch->fd, SHMCHAN_LOCK_WRITER, 1);

	if (rc)
		return rc;
	w = calloc(1, sizeof(*w));
	if (!w) {
		shmchan_unlock_byte(ch->fd, SHMCHAN_LOCK_WRITER);
		return -ENOMEM;
	}
	w->ch = ch;
	/* Our own position: nobody else moves it while we hold the lock (a dead predecessor may have
	   left it anywhere: the kind checks it). The reader's keeps moving. */
	w->head = shmchan_read_once64(&h->head);
	/* (E) acquire: pairs with (D) */
	w->cached_tail = shmchan_load_acquire64(&h->tail);
	w->reserved = SHMCHAN_NO_RESERVATION;
	w->messages = shmchan_read_once64(&h->w_messages);
	w->bytes = shmchan_read_once64(&h->w_bytes);
	w->full = shmchan_read_once64(&h->w_full);
	w->aborts = shmchan_read_once64(&h->w_aborts);
	w->wake_seq = shmchan_read_once32(&h->head_wake);
	w->spin_ns = SHMCHAN_DEFAULT_SPIN_NS;
	w->polite_ns = shmchan_polite_after_ns();
	*out = w;
	return 0;
}

void shmchan_writer_discard(shmchan_writer *w)
{
	shmchan_unlock_byte(w->ch->fd, SHMCHAN_LOCK_WRITER);
	free(w);
}

void shmchan_writer_announce(shmchan_writer *w)
{
	shmchan_peer_announce(w->ch, 1);
	w->ch->writer = w;
}

void shmchan_writer_finish(shmchan_writer *w)
{
	shmchan_channel *ch = w->ch;
	struct shmchan_header *h = ch->hdr;

	shmchan_peer_leave(ch, 1);
	/* wake readers asleep on an empty ring: they must learn that the stream ended */
	shmchan_notify(&h->head_wake, &w->wake_seq, &h->reader_waiting, ch->ops->counted_sleepers);
	w->ended = 1;
}

void shmchan_writer_detach(shmchan_writer *w)
{
	shmchan_unlock_byte(w->ch->fd, SHMCHAN_LOCK_WRITER);
	w->ch->writer = NULL;
	shmchan_writer_free(w);
}

void shmchan_writer_free(shmchan_writer *w)
{
	free(w);
}

void shmchan_writer_drop(shmchan_writer *w)
{
	w->reserved = SHMCHAN_NO_RESERVATION;
	shmchan_write_once64(&w->ch->hdr->w_aborts, ++w->aborts);
}

/* msync flags after each commit, or 0 when the policy says not to. */
static int commit_sync_flags(const shmchan_channel *ch)
{
	uint32_t policy = ch->g.flags & SHMCHAN_FLAG_MSYNC_MASK;

	return policy == SHMCHAN_MSYNC_SYNC ? MS_SYNC : policy == SHMCHAN_MSYNC_ASYNC ? MS_ASYNC : 0;
}

void shmchan_sync_slot(shmchan_channel *ch, uint32_t s, uint64_t nbytes)
{
	int flags = commit_sync_flags(ch);

	if (flags)
		shmchan_msync_range(shmchan_slot_data(ch, s), nbytes ? nbytes : 1, flags);
}

/* ...and then the control block with the new position (and the page of the slot table after it). */
static void sync_control(shmchan_channel *ch)
{
	int flags = commit_sync_flags(ch);

	if (flags)
		shmchan_msync_range(ch->base, SHMCHAN_CONTROL_SIZE, flags);
}

int shmchan_publish(shmchan_writer *w, uint64_t nbytes)
{
	shmchan_channel *ch = w->ch;
	struct shmchan_header *h = ch->hdr;

	w->head += 1;
	w->reserved = SHMCHAN_NO_RESERVATION;
	/* (B) release: payload and length before head; pairs with (C) */
	shmchan_store_release64(&h->head, w->head);
	shmchan_write_once64(&h->w_messages, ++w->messages);
	w->bytes += nbytes;
	shmchan_write_once64(&h->w_bytes, w->bytes);
	/* sleeping readers must see it (with counted sleepers, one wake-up call for all of them) */
	if (shmchan_notify(&h->head_wake, &w->wake_seq, &h->reader_waiting, ch->ops->counted_sleepers) != 0) {
		w->futile_wakes = 0;
	} else if (ch->ops->counted_sleepers && ++w->futile_wakes >= SHMCHAN_FUTILE_WAKES) {
		/* counted readers, yet nobody asleep, again and again: sleepers that were killed? */
		shmchan_repair_sleepers(ch);
		w->futile_wakes = 0;
	}
	if (shmchan_syncs_commits(ch))
		sync_control(ch);
	return shmchan_check_truncated(ch);
}

void shmchan_stamp_slot(shmchan_channel *ch, uint32_t s)
{
	shmchan_write_once64(&ch->meta[s].seq, SHMCHAN_SEQ_WRITING);
	/* (M1) release fence: the stamp before any payload store; pairs with (M3) */
	shmchan_fence_release();
}

int shmchan_publish_stamped(shmchan_writer *w, uint64_t nbytes, uint64_t seq)
{
	shmchan_channel *ch = w->ch;
	const uint32_t s = w->slot;

	shmchan_write_once64(&ch->meta[s].len, nbytes);
	if (shmchan_syncs_commits(ch))
		shmchan_sync_slot(ch, s, nbytes);
	/* (M2) release: payload and length before the slot's sequence; pairs with (M4) */
	shmchan_store_release64(&ch->meta[s].seq, seq);
	return shmchan_publish(w, nbytes);
}
