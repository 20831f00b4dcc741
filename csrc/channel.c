/* SPDX-License-Identifier: MIT */
/* The public entries that depend on the kind: each checks its arguments, then calls the kind's ops. */
#include <errno.h>
#include <string.h>

#include "internal.h"

/*
 * The only file that names every kind. A channel handle gets the operations of its kind once its
 * segment is mapped and its header validated (so the kind is one of the three); from then on
 * every call below goes through ch->ops. Barriers: none here; the kinds, writer.c, reader.c and
 * wait.c hold them.
 */

#ifndef SHMCHAN_PKG_VERSION
#define SHMCHAN_PKG_VERSION "0.0.0+unknown"
#endif

static const struct shmchan_kind_ops *kind_ops(uint32_t kind)
{
	switch (kind) {
	case SHMCHAN_KIND_SPSC:
		return &shmchan_spsc_ops;
	case SHMCHAN_KIND_BROADCAST:
		return &shmchan_bcast_ops;
	case SHMCHAN_KIND_STATE:
		return &shmchan_board_ops;
	default:
		return NULL;
	}
}

/* Public timeouts: every negative one waits for ever (-1), so none can be the try calls' own. */
static int64_t public_timeout(int64_t timeout_ns)
{
	return timeout_ns < 0 ? -1 : timeout_ns;
}

/* Gives a freshly mapped channel (rc 0) the operations of its kind. */
static int adopt(int rc, shmchan_channel **out)
{
	if (rc)
		return rc;
	(*out)->ops = kind_ops((*out)->g.kind);
	if (!(*out)->ops) { /* the header's validation admits no other kind */
		shmchan_segment_close(*out);
		*out = NULL;
		return -SHMCHAN_EVERSION;
	}
	return 0;
}

/* ---- versions stamped into this build ---- */

const char *shmchan_version(void)
{
	return SHMCHAN_PKG_VERSION;
}

int shmchan_layout_major(void)
{
	return SHMCHAN_LAYOUT_MAJOR;
}

int shmchan_layout_minor(void)
{
	return SHMCHAN_LAYOUT_MINOR;
}

/* ---- channel handles ---- */

int shmchan_create(const char *name, const struct shmchan_config *cfg, shmchan_channel **out,
		   struct shmchan_diag *diag)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return adopt(shmchan_segment_create(name, cfg, out, diag), out);
}

int shmchan_create_file(const char *path, const struct shmchan_config *cfg, shmchan_channel **out,
			struct shmchan_diag *diag)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return adopt(shmchan_segment_create_file(path, cfg, out, diag), out);
}

int shmchan_create_sealed(const struct shmchan_config *cfg, shmchan_channel **out, struct shmchan_diag *diag)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return adopt(shmchan_memfd_create(cfg, out, diag), out);
}

int shmchan_open(const char *name, int64_t timeout_ns, shmchan_channel **out, struct shmchan_diag *diag)
{
	return shmchan_open_ex(name, timeout_ns, 0, out, diag);
}

int shmchan_open_ex(const char *name, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
		    struct shmchan_diag *diag)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return adopt(shmchan_segment_open(name, timeout_ns, flags, out, diag), out);
}

int shmchan_open_file(const char *path, int64_t timeout_ns, shmchan_channel **out, struct shmchan_diag *diag)
{
	return shmchan_open_file_ex(path, timeout_ns, 0, out, diag);
}

int shmchan_open_file_ex(const char *path, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
			 struct shmchan_diag *diag)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return adopt(shmchan_segment_open_file(path, timeout_ns, flags, out, diag), out);
}

int shmchan_open_fd(int fd, int64_t timeout_ns, uint32_t flags, shmchan_channel **out, struct shmchan_diag *diag)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return adopt(shmchan_memfd_open(fd, timeout_ns, flags, out, diag), out);
}

int shmchan_connect(const char *path, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
		    struct shmchan_diag *diag)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return adopt(shmchan_memfd_connect(path, timeout_ns, flags, out, diag), out);
}

void shmchan_close(shmchan_channel *ch)
{
	if (!ch)
		return;
	if (ch->inherited) {
		/* the parent's locks and states: leave them alone, free only our copies */
		if (ch->writer) {
			if (ch->ops->writer_close)
				ch->ops->writer_close(ch->writer);
			shmchan_writer_free(ch->writer);
		}
		if (ch->reader)
			shmchan_reader_free(ch->reader);
	} else {
		if (ch->writer)
			shmchan_writer_close(ch->writer);
		if (ch->reader)
			shmchan_reader_close(ch->reader);
	}
	shmchan_segment_close(ch);
}

int shmchan_stats(const shmchan_channel *ch, struct shmchan_stats *out)
{
	const struct shmchan_header *h;

	if (!ch || !out)
		return -EINVAL;
	h = ch->hdr;
	memset(out, 0, sizeof(*out));
	/*
	 * head and tail as one snapshot (tail, head, tail again, as an inspection takes them): while
	 * tail stays put, tail <= head <= tail + capacity holds on a healthy channel, so a tool may call
	 * anything else corrupt. A channel too busy to give one in 100 tries gives the last reads.
	 */
	for (int tries = 0; tries < 100; tries++) {
		/* (E) acquire: pairs with (D) */
		out->tail = shmchan_load_acquire64(&h->tail);
		/* (C) acquire: pairs with (B) */
		out->head = shmchan_load_acquire64(&h->head);
		/* (E) acquire: pairs with (D) */
		if (shmchan_load_acquire64(&h->tail) == out->tail)
			break;
	}
	/* The rest is a snapshot for people, not for decisions: relaxed reads, maybe mutually stale. */
	out->messages_written = shmchan_read_once64(&h->w_messages);
	out->bytes_written = shmchan_read_once64(&h->w_bytes);
	out->full_waits = shmchan_read_once64(&h->w_full);
	out->aborts = shmchan_read_once64(&h->w_aborts);
	out->messages_read = shmchan_read_once64(&h->r_messages);
	out->bytes_read = shmchan_read_once64(&h->r_bytes);
	out->empty_waits = shmchan_read_once64(&h->r_empty);
	out->writer_state = shmchan_read_once32(&h->writer_state);
	out->reader_state = shmchan_read_once32(&h->reader_state);
	out->writer_pid = shmchan_read_once32(&h->writer_pid);
	out->reader_pid = shmchan_read_once32(&h->reader_pid);
	out->writer_alive = out->writer_state == SHMCHAN_PEER_ATTACHED && shmchan_peer_alive(ch, 1);
	out->reader_alive = out->reader_state == SHMCHAN_PEER_ATTACHED && shmchan_peer_alive(ch, 0);
	if (ch->ops->stats)
		ch->ops->stats(ch, out);
	return 0;
}

int shmchan_inspect(shmchan_channel *ch, uint64_t pos, void *buf, uint64_t cap, uint64_t *len, uint64_t *first,
		    uint64_t *end)
{
	if (!ch || !len || !first || !end || (!buf && cap))
		return -EINVAL;
	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	return ch->ops->inspect(ch, pos, buf, cap, len, first, end);
}

int shmchan_reader_places(const shmchan_channel *ch, struct shmchan_place_info *out, uint32_t max)
{
	if (!ch || (!out && max))
		return -EINVAL;
	return ch->ops->places ? ch->ops->places(ch, out, max) : 0;
}

/*
 * For a binding: one wait in the one wait loop that ends at the first wake-up (`once`), whether or
 * not head moved, so that shmchan_wake_head can end it; no peer is watched, no reader is touched.
 */
int shmchan_wait_head_spin(shmchan_channel *ch, uint64_t pos, int64_t spin_ns, int64_t timeout_ns)
{
	struct shmchan_header *h;
	uint64_t seen;
	int rc;

	if (!ch)
		return -EINVAL;
	h = ch->hdr;
	{
		/* SPSC: the one reader's flag, as its own waits set it; other kinds count their sleepers */
		const struct shmchan_waiter wt = {
			.ch = ch,
			.watched = &h->head,
			.stale = pos,
			.wake_word = &h->head_wake,
			.my_flag = &h->reader_waiting,
			.counted = ch->ops->counted_sleepers,
			.once = 1,
			.spin_ns = spin_ns,
			.polite_ns = spin_ns > 0 ? shmchan_channel_polite_ns(ch) : 0,
		};
		rc = shmchan_wait(&wt, public_timeout(timeout_ns), &seen);
	}
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

/* ---- writer ---- */

int shmchan_writer_attach(shmchan_channel *ch, shmchan_writer **out)
{
	shmchan_writer *w;
	int rc, was_writable;

	if (!ch || !out)
		return -EINVAL;
	*out = NULL;
	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	if (ch->writer)
		return -EBUSY;
	rc = shmchan_writer_open(ch, &w);
	if (rc)
		return rc;
	/* the writer's handle may write the slots (other handles keep them read-only); they stay
	   writable after it closes, for views of its slots that outlive it */
	was_writable = ch->slots_writable;
	rc = shmchan_segment_protect_slots(ch, 1);
	if (rc == 0 && ch->ops->writer_attach) {
		rc = ch->ops->writer_attach(w);
		if (rc && !was_writable)
			(void)shmchan_segment_protect_slots(ch, 0);
	}
	if (rc) {
		shmchan_writer_discard(w);
		return rc;
	}
	shmchan_writer_announce(w);
	*out = w;
	return 0;
}

void shmchan_writer_end(shmchan_writer *w)
{
	if (!w || w->ended)
		return;
	if (w->reserved != SHMCHAN_NO_RESERVATION)
		shmchan_writer_drop(w);
	shmchan_writer_finish(w);
}

void shmchan_writer_close(shmchan_writer *w)
{
	if (!w)
		return;
	shmchan_writer_end(w);
	if (w->ch->ops->writer_close)
		w->ch->ops->writer_close(w);
	shmchan_writer_detach(w);
}

uint64_t shmchan_writer_position(const shmchan_writer *w)
{
	return w ? w->head : 0;
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
	int continuing, s;

	if (!w || !data)
		return -EINVAL;
	ch = w->ch;
	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	if (w->ended)
		return -EPIPE;
	if (w->reserved != SHMCHAN_NO_RESERVATION)
		return -EALREADY;
	if (nbytes > ch->g.slot_size)
		return -EMSGSIZE;
	continuing = w->continuing;
	w->continuing = 0;
	s = ch->ops->reserve(w, timeout_ns, continuing);
	if (s < 0)
		return s;
	w->slot = (uint32_t)s;
	w->reserved = nbytes;
	*data = shmchan_slot_data(ch, w->slot);
	if (slot)
		*slot = w->slot;
	return 0;
}

int shmchan_reserve(shmchan_writer *w, uint64_t nbytes, int64_t timeout_ns, void **data, uint32_t *slot)
{
	return reserve(w, nbytes, public_timeout(timeout_ns), data, slot);
}

int shmchan_try_reserve(shmchan_writer *w, uint64_t nbytes, void **data, uint32_t *slot)
{
	return reserve(w, nbytes, SHMCHAN_TRY_NS, data, slot);
}

int shmchan_commit(shmchan_writer *w, uint64_t nbytes)
{
	if (!w)
		return -EINVAL;
	if (w->reserved == SHMCHAN_NO_RESERVATION)
		return -ENOENT;
	if (nbytes > w->reserved)
		return -EMSGSIZE;
	if (shmchan_check_truncated(w->ch)) {
		w->reserved = SHMCHAN_NO_RESERVATION; /* the payload went into the void: never publish it */
		return -SHMCHAN_ECORRUPT;
	}
	return w->ch->ops->commit(w, nbytes);
}

int shmchan_abort(shmchan_writer *w)
{
	if (!w)
		return -EINVAL;
	if (w->reserved == SHMCHAN_NO_RESERVATION)
		return -ENOENT;
	shmchan_writer_drop(w);
	return 0;
}

int shmchan_send(shmchan_writer *w, const char *data, uint64_t nbytes, int64_t timeout_ns)
{
	void *dst;
	int rc;

	if (!data && nbytes)
		return -EINVAL;
	rc = reserve(w, nbytes, public_timeout(timeout_ns), &dst, NULL);
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
	shmchan_reader *r;
	int rc;

	if (!ch || !out || flags > SHMCHAN_START_OLDEST)
		return -EINVAL;
	*out = NULL;
	if (!ch->ops->reader_attach)
		return -EOPNOTSUPP; /* a board is read with shmchan_state_read, by any number of handles */
	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	if (ch->reader)
		return -EBUSY; /* one reader per handle (broadcast: open the channel again for another) */
	rc = ch->ops->reader_attach(ch, flags, &r);
	if (rc)
		return rc;
	ch->reader = r;
	*out = r;
	return 0;
}

void shmchan_reader_close(shmchan_reader *r)
{
	if (r)
		r->ch->ops->reader_close(r);
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
		shmchan_write_once64(r->empty_count, ++r->empty);
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

int shmchan_peek(shmchan_reader *r, int64_t timeout_ns, struct shmchan_msg *msg)
{
	int rc;

	if (!r || !msg)
		return -EINVAL;
	rc = r->ch->ops->peek_batch(r, msg, 1, public_timeout(timeout_ns));
	return rc < 0 ? rc : 0;
}

int shmchan_peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max, int64_t timeout_ns)
{
	if (!r || !msgs || max == 0 || max > INT32_MAX)
		return -EINVAL;
	return r->ch->ops->peek_batch(r, msgs, max, public_timeout(timeout_ns));
}

int shmchan_try_peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max)
{
	if (!r || !msgs || max == 0 || max > INT32_MAX)
		return -EINVAL;
	return r->ch->ops->peek_batch(r, msgs, max, SHMCHAN_TRY_NS);
}

int shmchan_wait_readable(shmchan_reader *r, int64_t timeout_ns)
{
	if (!r)
		return -EINVAL;
	return shmchan_ensure_available(r, public_timeout(timeout_ns));
}

int shmchan_release(shmchan_reader *r, uint64_t pos)
{
	if (!r)
		return -EINVAL;
	return r->ch->ops->release(r, pos);
}

int shmchan_check(shmchan_reader *r, uint64_t pos)
{
	if (!r)
		return -EINVAL;
	return r->ch->ops->check(r, pos);
}

int shmchan_recv(shmchan_reader *r, void *buf, uint64_t cap, uint64_t *len, int64_t timeout_ns)
{
	const struct shmchan_kind_ops *ops;
	struct shmchan_msg m;
	int rc;

	if (!r || (!buf && cap) || !len)
		return -EINVAL;
	ops = r->ch->ops;
	timeout_ns = public_timeout(timeout_ns);
	for (;;) {
		rc = ops->peek_batch(r, &m, 1, timeout_ns);
		if (rc < 0)
			return rc;
		*len = m.len;
		if (m.len > cap) {
			r->read_pos -= 1; /* give it back untouched: the caller may retry with a larger buffer */
			return -EMSGSIZE;
		}
		if (m.len)
			memcpy(buf, m.data, (size_t)m.len);
		rc = shmchan_check_truncated(r->ch); /* the copy may have read zeros from a truncated object */
		if (rc)
			return rc;
		rc = ops->release(r, m.pos);
		if (rc != -ESTALE)
			return rc; /* a torn copy is never returned: it counts as lost and we take the next */
	}
}

/* ---- state boards ---- */

int shmchan_state_read(shmchan_channel *ch, void *buf, uint64_t cap, uint64_t *len, uint64_t *version)
{
	if (!ch || !ch->ops->state_read || !len || !version || (!buf && cap))
		return -EINVAL;
	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	return ch->ops->state_read(ch, buf, cap, len, version);
}

uint64_t shmchan_state_version(const shmchan_channel *ch)
{
	return ch && ch->ops->state_version ? ch->ops->state_version(ch) : 0;
}

int shmchan_state_wait(shmchan_channel *ch, uint64_t version, int64_t timeout_ns, uint64_t *now_version)
{
	if (!ch || !ch->ops->state_wait || !now_version)
		return -EINVAL;
	if (ch->poisoned)
		return -SHMCHAN_ECORRUPT;
	return ch->ops->state_wait(ch, version, public_timeout(timeout_ns), now_version);
}
