/* SPDX-License-Identifier: MIT */
/* Liveness: lock bytes the kernel drops when their holder dies, and the attach states beside them. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static void lock_spec(struct flock *fl, short type, int offset)
{
	memset(fl, 0, sizeof(*fl));
	fl->l_type = type;
	fl->l_whence = SEEK_SET;
	fl->l_start = offset;
	fl->l_len = 1;
}

/* Takes a lock on one byte without waiting: 0, -EBUSY when another holder conflicts, or -errno. */
int shmchan_lock_byte(int fd, int offset, int exclusive)
{
	struct flock fl;

	lock_spec(&fl, exclusive ? F_WRLCK : F_RDLCK, offset);
	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	if (errno == EAGAIN || errno == EACCES)
		return -EBUSY;
	return -errno;
}

int shmchan_lock_byte_shared_wait(int fd, int offset)
{
	struct flock fl;

	lock_spec(&fl, F_RDLCK, offset);
	/* blocks only while somebody holds the byte exclusively (a repair of the sleeper count: a few
	   microseconds); a signal ends it */
	return fcntl(fd, F_OFD_SETLKW, &fl) == 0 ? 0 : -errno;
}

void shmchan_unlock_byte(int fd, int offset)
{
	struct flock fl;

	lock_spec(&fl, F_UNLCK, offset);
	(void)fcntl(fd, F_OFD_SETLK, &fl);
}

/* 1 when some other open file description holds any lock on the byte, 0 when none, or -errno. */
int shmchan_byte_locked(int fd, int offset)
{
	struct flock fl;

	lock_spec(&fl, F_WRLCK, offset);
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
		return -errno;
	return fl.l_type != F_UNLCK;
}

/*
 * Whether the peer on one side is alive: 1 alive (or never attached, or closed cleanly: nothing to
 * mourn), 0 attached and dead. A peer marks itself ATTACHED only after it holds its lock byte and
 * marks itself CLOSED before it drops it, so "ATTACHED, same generation before and after, and no
 * lock" can only mean it died.
 */
int shmchan_peer_alive(const shmchan_channel *ch, int writer_side)
{
	const struct shmchan_header *h = ch->hdr;
	const _Atomic uint32_t *state = writer_side ? &h->writer_state : &h->reader_state;
	const _Atomic uint64_t *gen = writer_side ? &h->writer_gen : &h->reader_gen;
	uint32_t s1, s2;
	uint64_t g1, g2;
	int locked;

	if (writer_side ? ch->writer != NULL : ch->reader != NULL)
		return 1; /* this handle is that peer: our own lock does not show in F_OFD_GETLK */
	/* (L1) acquire: pairs with (L0) in shmchan_peer_announce, the state store made after taking the lock */
	s1 = shmchan_load_acquire32(state);
	g1 = shmchan_read_once64(gen);
	if (s1 != SHMCHAN_PEER_ATTACHED)
		return 1;
	locked = shmchan_byte_locked(ch->fd, writer_side ? SHMCHAN_LOCK_WRITER : SHMCHAN_LOCK_READER);
	if (locked != 0)
		return 1; /* held, or we cannot tell: never declare a live peer dead */
	/* (L2) acquire: a peer that attached or closed meanwhile has changed state or generation */
	s2 = shmchan_load_acquire32(state);
	g2 = shmchan_read_once64(gen);
	return !(s2 == SHMCHAN_PEER_ATTACHED && g1 == g2);
}

/* Whether the owner of broadcast reader place i holds its lock (or we cannot tell: never declare a
   live reader dead). This handle's own reader counts as alive: F_OFD_GETLK does not report our own
   locks. */
int shmchan_place_alive(const shmchan_channel *ch, uint32_t i)
{
	if (ch->reader && ch->reader->place == &ch->places[i])
		return 1;
	return shmchan_byte_locked(ch->fd, SHMCHAN_LOCK_READERS + (int)i) != 0;
}

static void set_state(_Atomic uint32_t *state, uint32_t v)
{
	/* (L0) release: pid and generation before the state; pairs with (L1)/(L2) in shmchan_peer_alive */
	shmchan_store_release32(state, v);
}

void shmchan_peer_announce(shmchan_channel *ch, int writer_side)
{
	struct shmchan_header *h = ch->hdr;
	_Atomic uint64_t *gen = writer_side ? &h->writer_gen : &h->reader_gen;

	shmchan_write_once32(writer_side ? &h->writer_waiting : &h->reader_waiting, 0);
	shmchan_write_once64(gen, shmchan_read_once64(gen) + 1);
	shmchan_write_once32(writer_side ? &h->writer_pid : &h->reader_pid, (uint32_t)getpid());
	set_state(writer_side ? &h->writer_state : &h->reader_state, SHMCHAN_PEER_ATTACHED);
}

void shmchan_peer_leave(shmchan_channel *ch, int writer_side)
{
	struct shmchan_header *h = ch->hdr;

	set_state(writer_side ? &h->writer_state : &h->reader_state, SHMCHAN_PEER_CLOSED);
}

int shmchan_watch_writer(void *ch)
{
	return shmchan_peer_alive(ch, 1) ? 0 : -SHMCHAN_EPEERDEAD;
}

int shmchan_watch_reader(void *ch)
{
	return shmchan_peer_alive(ch, 0) ? 0 : -SHMCHAN_EPEERDEAD;
}
