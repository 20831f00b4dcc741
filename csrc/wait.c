/* SPDX-License-Identifier: MIT */
/* The one wait loop (spin, then futex slices, watching the peer) and the wake-ups that end it. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>

#include "internal.h"

/*
 * Barriers (docs/protocol.md has the table):
 *   (C)/(E) acquire of the watched position   pairs with (B)/(D), the peer's release of it
 *   (F) release of an event count             pairs with (G) the sleeper's acquire of it
 *   (W) full fence after (F), before the flag pairs with (R) the sleeper's full fence (flag, then look)
 *   (L1) acquire of writer_state              pairs with (L0) in liveness.c
 *
 * Counted sleepers (BROADCAST, STATE readers, a binding's parked helper threads) hold a shared lock
 * on byte SHMCHAN_LOCK_SLEEPERS from before they add themselves to reader_waiting until after they
 * subtract themselves. A reader killed asleep cannot subtract itself, but the kernel drops its
 * lock: a writer whose wake-ups keep finding nobody asleep takes that byte exclusively (so no live
 * sleeper is counted meanwhile) and clears the count (shmchan_repair_sleepers).
 *
 * Every blocking call of the core comes through shmchan_wait: a writer on a full ring (SPSC here
 * with a position, broadcast with a scan of the reader places), readers on an empty ring, a board
 * waiting for a new version, and a binding's wait for head (`once`). Whatever must end all of
 * them -- a deadline, a signal, a dead peer, shmchan_interrupt -- is checked in its loop: between
 * spin rounds, before every sleep, after every slice.
 */

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

/* One look at what the waiter waits for: 1 ready, 0 not yet, < 0 an error. */
static inline int look(const struct shmchan_waiter *wt, uint64_t *seen)
{
	uint64_t v;

	if (wt->ready)
		return wt->ready(wt->arg);
	/* (C)/(E) acquire: see the peer's slot work; pairs with (B)/(D) */
	v = shmchan_load_acquire64(wt->watched);
	if (v == wt->stale)
		return 0;
	*seen = v;
	return 1;
}

/*
 * Spins for the waiter's spin time (never past the deadline): 1 when the wait is over, 0 when it
 * must sleep, < 0 an error. A position costs one load: it is looked at 32 times between clock
 * readings. A `ready` check (a broadcast writer's scan of every reader place) costs more: once per
 * reading, a few pauses apart, so that it does not hammer the lines the readers write.
 */
static int spin(const struct shmchan_waiter *wt, int64_t start, int64_t deadline, uint64_t *seen)
{
	const int64_t until = shmchan_deadline(start, wt->spin_ns);
	const int64_t spin_end = until < deadline ? until : deadline;
	/* after a while, let a peer that shares our CPU run (see shmchan_polite_after_ns) */
	const int64_t polite = start + wt->polite_ns;
	const int looks = wt->ready ? 1 : 32, pauses = wt->ready ? 8 : 1;
	int64_t now;
	int rc;

	do {
		for (int i = 0; i < looks; i++) {
			rc = look(wt, seen);
			if (rc)
				return rc;
			for (int j = 0; j < pauses; j++)
				shmchan_cpu_relax();
		}
		if (cancelled(wt))
			return -ECANCELED;
		now = shmchan_now_ns();
		if (now >= polite)
			sched_yield();
	} while (now < spin_end);
	return 0;
}

/* This thread is about to be counted: the first counted sleeper of the handle takes the lock byte. */
static int sleeper_enter(shmchan_channel *ch)
{
	int rc = 0;

	pthread_mutex_lock(&ch->sleep_mu);
	if (ch->local_sleepers == 0)
		rc = shmchan_lock_byte_shared_wait(ch->fd, SHMCHAN_LOCK_SLEEPERS);
	if (rc == 0)
		ch->local_sleepers++;
	pthread_mutex_unlock(&ch->sleep_mu);
	return rc;
}

/* ...and is no longer counted: the last one drops it. */
static void sleeper_leave(shmchan_channel *ch)
{
	pthread_mutex_lock(&ch->sleep_mu);
	if (--ch->local_sleepers == 0)
		shmchan_unlock_byte(ch->fd, SHMCHAN_LOCK_SLEEPERS);
	pthread_mutex_unlock(&ch->sleep_mu);
}

int shmchan_repair_sleepers(shmchan_channel *ch)
{
	struct shmchan_header *h = ch->hdr;
	int cleared = 0;

	pthread_mutex_lock(&ch->sleep_mu); /* none of this handle's threads starts to sleep meanwhile */
	if (ch->local_sleepers == 0 && shmchan_lock_byte(ch->fd, SHMCHAN_LOCK_SLEEPERS, 1) == 0) {
		/* nobody holds the byte: every live sleeper has subtracted itself and none can add itself
		   until we let go, so what the count says now was left by sleepers that died */
		uint32_t left = shmchan_read_once32(&h->reader_waiting);
		if (left) {
			shmchan_fetch_sub32(&h->reader_waiting, left);
			cleared = 1;
		}
		shmchan_unlock_byte(ch->fd, SHMCHAN_LOCK_SLEEPERS);
	}
	pthread_mutex_unlock(&ch->sleep_mu);
	return cleared;
}

int shmchan_wait(const struct shmchan_waiter *wt, int64_t timeout_ns, uint64_t *seen)
{
	struct shmchan_header *h = wt->ch->hdr;
	const int64_t start = timeout_ns == 0 ? 0 : shmchan_now_ns();
	const int64_t deadline = shmchan_deadline(start, timeout_ns);
	int watched_peer = 0;
	uint32_t seq;
	int rc;

	if (timeout_ns != 0 && wt->spin_ns > 0) {
		rc = spin(wt, start, deadline, seen);
		if (rc)
			return rc < 0 ? rc : 0;
	}

	if (wt->counted) {
		rc = sleeper_enter(wt->ch);
		if (rc)
			return rc;
		shmchan_fetch_add32(wt->my_flag, 1);
	}
	for (;;) {
		if (!wt->counted)
			shmchan_write_once32(wt->my_flag, 1);
		/* (R) full fence: flag store before the look below; pairs with (W) in the waker */
		shmchan_fence_seq_cst();
		/* (G) acquire: a new event count implies the new position; pairs with (F) */
		seq = shmchan_load_acquire32(wt->wake_word);
		rc = look(wt, seen);
		if (rc) {
			rc = rc < 0 ? rc : 0;
			break;
		}
		/* A writer's last commit may have come after our look above: the position is looked at
		   again before the end (or a dead peer) is believed, else that message is lost. */
		/* (L1) acquire: a writer that closed has published everything it will; pairs with (L0) */
		if (wt->ends_on_close && shmchan_load_acquire32(&h->writer_state) == SHMCHAN_PEER_CLOSED) {
			rc = -SHMCHAN_EENDED;
		} else if (!watched_peer && wt->watch_peer) {
			rc = wt->watch_peer(wt->arg);
			if (rc >= 0)
				watched_peer = 1;
			if (rc > 0)
				continue; /* it freed something: look again before sleeping */
		}
		if (rc < 0) {
			/* the close or the death came after the peer's last (B)/(D): look() acquires it */
			if (look(wt, seen) > 0)
				rc = 0;
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
		if (rc == -ETIMEDOUT) {
			watched_peer = 0; /* a slice passed: look at the peer again */
			rc = 0;
		} else if (rc != 0) {
			break;
		} else if (wt->once) {
			/* that wake-up (or a later one) may have been shmchan_interrupt's: say so */
			rc = cancelled(wt) ? -ECANCELED : 0;
			break;
		}
	}
	if (wt->counted) {
		shmchan_fetch_sub32(wt->my_flag, 1);
		sleeper_leave(wt->ch);
	} else {
		shmchan_write_once32(wt->my_flag, 0);
	}
	return rc;
}

int shmchan_notify(_Atomic uint32_t *wake_word, uint32_t *seq, _Atomic uint32_t *peer_flag, int all)
{
	*seq += 1;
	/* (F) release: the position store before it is visible to whoever sees the new count; pairs with (G) */
	shmchan_store_release32(wake_word, *seq);
	/* (W) full fence: position and count stores before reading the flag; pairs with (R) */
	shmchan_fence_seq_cst();
	if (!shmchan_read_once32(peer_flag))
		return -1;
	if (all)
		return shmchan_futex_wake_all(wake_word);
	shmchan_futex_wake(wake_word);
	return 1;
}

void shmchan_notify_shared(_Atomic uint32_t *wake_word)
{
	shmchan_fetch_add32(wake_word, 1);
	shmchan_futex_wake(wake_word);
}

void shmchan_interrupt(shmchan_channel *ch)
{
	if (!ch)
		return;
	/* a flag of this process only: the waits of this handle look at it between spin rounds and
	   before each sleep; the wake-ups below end the sleeps already under way */
	shmchan_write_once32(&ch->interrupted, 1);
	shmchan_futex_wake_all(&ch->hdr->head_wake);
	shmchan_futex_wake_all(&ch->hdr->tail_wake);
}

void shmchan_writer_interrupt(shmchan_writer *w)
{
	if (!w)
		return;
	shmchan_write_once32(&w->interrupted, 1);
	shmchan_futex_wake_all(&w->ch->hdr->tail_wake); /* where a blocked reserve sleeps */
}
