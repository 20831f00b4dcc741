/* SPDX-License-Identifier: MIT */
/* Sealed channels: an anonymous memfd that nobody can shrink or grow, shared by passing its fd. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define MEMFD_NAME "memfd:shmchan"
#define NEEDED_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010 /* Linux 5.1; older headers lack the name */
#endif
#define MAX_FDS 16 /* room for this many descriptors in one answer: all of them are closed when refused */

int shmchan_memfd_create(const struct shmchan_config *cfg, shmchan_channel **out, struct shmchan_diag *diag)
{
	struct shmchan_geom g;
	char *name;
	int fd, rc;

	if (!cfg)
		return -EINVAL;
	rc = shmchan_geometry(cfg, &g);
	if (rc == 0 && cfg->descriptor_size && !cfg->descriptor)
		rc = -EINVAL;
	if (rc) {
		shmchan_diagf(diag, rc == -EOVERFLOW ? "channel size overflows" : "invalid channel geometry");
		return rc;
	}
	g.flags |= SHMCHAN_FLAG_SEALED;
	name = strdup(MEMFD_NAME);
	if (!name)
		return -ENOMEM;
	fd = memfd_create("shmchan", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		rc = -errno;
		shmchan_diagf(diag, "memfd_create: %s", strerror(errno));
		free(name);
		return rc;
	}
	rc = shmchan_segment_init(fd, name, SHMCHAN_BACKING_MEMFD, &g, cfg->mode, cfg->descriptor, out, diag);
	if (rc)
		return rc; /* fd and name are released by init */
	/* Sizes are final: forbid shrinking (SIGBUS for readers), growing, and changing the seals. */
	if (fcntl(fd, F_ADD_SEALS, NEEDED_SEALS | F_SEAL_SEAL) != 0) {
		rc = -errno;
		shmchan_diagf(diag, "sealing the memfd: %s", strerror(errno));
		shmchan_segment_close(*out);
		*out = NULL;
	}
	return rc;
}

int shmchan_memfd_open(int fd, int64_t timeout_ns, uint32_t flags, shmchan_channel **out, struct shmchan_diag *diag)
{
	char path[64];
	char *name;
	int own, seals;

	if (fd < 0)
		return -EINVAL;
	seals = fcntl(fd, F_GET_SEALS);
	if (seals > 0 && (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))) {
		/* both sides write the channel (positions, lengths, liveness): with F_SEAL_WRITE the
		   mapping fails, with F_SEAL_FUTURE_WRITE no writable mapping can be made */
		shmchan_diagf(diag, "the memfd is sealed against writing (%s%s%s), and a channel's peers must write it",
			      seals & F_SEAL_WRITE ? "F_SEAL_WRITE" : "",
			      (seals & F_SEAL_WRITE) && (seals & F_SEAL_FUTURE_WRITE) ? "|" : "",
			      seals & F_SEAL_FUTURE_WRITE ? "F_SEAL_FUTURE_WRITE" : "");
		return -EPERM;
	}
	if (seals < 0 || (seals & NEEDED_SEALS) != NEEDED_SEALS) {
		shmchan_diagf(diag, "the descriptor is not a memfd sealed against shrinking and growing");
		return -EPERM;
	}
	/*
	 * A received descriptor shares the sender's open file description, and with it the sender's
	 * OFD locks: re-open it so that this handle's writer/reader locks and liveness are its own.
	 */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	own = open(path, O_RDWR | O_CLOEXEC);
	if (own < 0) {
		int rc = -errno;
		shmchan_diagf(diag, "re-opening the descriptor: %s", strerror(errno));
		return rc;
	}
	name = strdup(MEMFD_NAME);
	if (!name) {
		close(own);
		return -ENOMEM;
	}
	return shmchan_segment_attach(own, name, SHMCHAN_BACKING_MEMFD, timeout_ns, flags, out, diag);
}

int shmchan_channel_fd(const shmchan_channel *ch)
{
	return ch ? ch->fd : -EINVAL;
}

int shmchan_send_fd(int sock, const shmchan_channel *ch)
{
	char byte = 'S';
	struct iovec iov = {&byte, 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg;
	struct cmsghdr *c;

	if (!ch)
		return -EINVAL;
	memset(&msg, 0, sizeof(msg));
	memset(&u, 0, sizeof(u));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &ch->fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

/* Says what a server that answered anything but b"S" with one descriptor sent, as Python would
   write the bytes (b'X'). */
static void bad_answer(struct shmchan_diag *diag, const char *bytes, ssize_t n, size_t nfd)
{
	char shown[16] = "";
	size_t at = 0;

	if (n <= 0) {
		shmchan_diagf(diag, "the server sent nothing (it closed the connection) and %zu descriptor(s); "
			      "a shmchan server sends b'S' with exactly one descriptor", nfd);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)bytes[i];

		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
			shown[at++] = (char)c;
		else
			at += (size_t)snprintf(shown + at, sizeof(shown) - at, "\\x%02x", c);
	}
	shmchan_diagf(diag, "the server sent b'%s' with %zu descriptor(s); a shmchan server sends b'S' with "
		      "exactly one descriptor", shown, nfd);
}

/* Waits until sock is ready for events, at most until deadline: 0, -ETIMEDOUT, -EINTR (a signal,
   when the caller asked for it) or -errno. */
static int wait_ready(int sock, short events, int64_t deadline, int eintr)
{
	struct pollfd p = {sock, events, 0};

	for (;;) {
		int64_t left = deadline - shmchan_now_ns();
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, left > 1000000000 ? 1000 : (int)(left / 1000000 + 1));
		if (r > 0)
			return 0;
		if (r < 0 && errno == EINTR && eintr)
			return -EINTR;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

/*
 * Receives the one descriptor a server sends with b"S" (shmchan_send_fd), waiting at most until
 * deadline. Anything else is -EPROTO, said in diag, with every descriptor that came closed.
 */
static int recv_fd(int sock, int64_t deadline, int eintr, int *fd, struct shmchan_diag *diag)
{
	char bytes[2]; /* one byte more than a good answer has, to see a longer one */
	struct iovec iov = {bytes, sizeof(bytes)};
	union {
		char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg;
	struct cmsghdr *c;
	size_t nfd = 0;
	ssize_t n;
	int rc, first = -1;

	rc = wait_ready(sock, POLLIN, deadline, eintr);
	if (rc)
		return rc;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -errno;
	/* every descriptor that came: the kernel closes those that did not fit (MSG_CTRUNC) */
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		size_t k, m;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
			continue;
		m = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < m; k++, nfd++) {
			int got;

			memcpy(&got, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
			if (nfd == 0)
				first = got;
		}
	}
	if (n == 1 && bytes[0] == 'S' && nfd == 1 && !(msg.msg_flags & MSG_CTRUNC)) {
		*fd = first;
		return 0;
	}
	/* not one channel descriptor: close whatever the peer sent, so a server answering garbage
	   cannot make us leak a descriptor per attempt */
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		size_t k, m;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
			continue;
		m = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < m; k++) {
			int bad;

			memcpy(&bad, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
			close(bad);
		}
	}
	bad_answer(diag, bytes, n, nfd);
	return -EPROTO;
}

/*
 * Connects without ever blocking past the deadline: a listener that never accepts (its backlog
 * full) makes a blocking connect(2) on a Unix socket wait for ever; a non-blocking one says EAGAIN,
 * and we try again every millisecond until the deadline. With `eintr`, a binding's call, -EINTR
 * also ends every slice of that retrying: a signal caught between two tries (or by another
 * thread) interrupts no system call, and the binding must still get to run its handler. Nothing
 * is held then, so calling again is the same as trying again here.
 */
static int connect_until(int sock, const struct sockaddr_un *addr, int64_t deadline, int eintr)
{
	const int64_t slice_end = shmchan_now_ns() + SHMCHAN_SLICE_NS;

	for (;;) {
		if (connect(sock, (const struct sockaddr *)addr, sizeof(*addr)) == 0)
			return 0;
		if (errno == EINPROGRESS) {
			int rc, err = 0;
			socklen_t len = sizeof(err);

			rc = wait_ready(sock, POLLOUT, deadline, eintr);
			if (rc)
				return rc;
			if (getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
				return -errno;
			return err ? -err : 0;
		}
		if (errno == EINTR && eintr)
			return -EINTR;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		if (shmchan_now_ns() >= deadline)
			return -ETIMEDOUT;
		if (eintr && shmchan_now_ns() >= slice_end)
			return -EINTR;
		{
			struct timespec ms = {0, 1000000};

			if (nanosleep(&ms, NULL) != 0 && errno == EINTR && eintr)
				return -EINTR;
		}
	}
}

int shmchan_memfd_connect(const char *path, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
			  struct shmchan_diag *diag)
{
	const int64_t deadline = shmchan_deadline(shmchan_now_ns(), timeout_ns < 0 ? INT64_MAX : timeout_ns);
	const int eintr = (flags & SHMCHAN_CONNECT_EINTR) != 0;
	struct sockaddr_un addr;
	int sock, fd = -1, rc;

	if (!path)
		return -EINVAL;
	if (strlen(path) >= sizeof(addr.sun_path)) {
		shmchan_diagf(diag, "socket path longer than %zu bytes", sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strcpy(addr.sun_path, path);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (sock < 0) {
		rc = -errno;
		shmchan_diagf(diag, "socket: %s", strerror(-rc));
		return rc;
	}
	rc = connect_until(sock, &addr, deadline, eintr);
	if (rc) {
		shmchan_diagf(diag, "cannot connect to %s: %s", path,
			      rc == -ETIMEDOUT ? "the listener did not accept in time" : strerror(-rc));
		goto out;
	}
	rc = recv_fd(sock, deadline, eintr, &fd, diag);
	if (rc) {
		if (rc != -EPROTO) /* recv_fd said what the server sent */
			shmchan_diagf(diag, "no channel descriptor from %s: %s", path,
				      rc == -ETIMEDOUT ? "the server sent nothing in time" : strerror(-rc));
		goto out;
	}
	{
		int64_t left = deadline - shmchan_now_ns();
		rc = shmchan_memfd_open(fd, left > 0 ? left : 0, flags & ~SHMCHAN_CONNECT_EINTR, out, diag);
	}
	close(fd);
out:
	close(sock);
	return rc;
}
