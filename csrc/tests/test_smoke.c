/* SPDX-License-Identifier: MIT */
/* Smoke test: create, attach both ends in one process, send and receive, close and unlink. */
#include "testutil.h"

int main(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	struct shmchan_diag diag;
	shmchan_channel *ch;
	shmchan_writer *w;
	shmchan_reader *r;
	char buf[64];
	uint64_t len;

	CHECK_RC(shmchan_create(t_name("smoke"), &cfg, &ch, &diag), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), -EAGAIN);
	for (int i = 0; i < 10; i++) {
		char msg[16];
		int n = snprintf(msg, sizeof(msg), "hello %d", i);
		CHECK_RC(shmchan_send(w, msg, (uint64_t)n, 0), 0);
		CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
		CHECK(len == (uint64_t)n && memcmp(buf, msg, len) == 0);
	}
	for (int i = 0; i < 4; i++)
		CHECK_RC(shmchan_send(w, "x", 1, 0), 0);
	CHECK_RC(shmchan_send(w, "x", 1, 0), -EAGAIN);
	CHECK_RC(shmchan_send(w, "x", 1, 1000000), -ETIMEDOUT);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
	return 0;
}
