/* SPDX-License-Identifier: MIT */
/* Sizes and offsets of the public C structs, so the Rust tests can check the hand-written FFI. */
#include <stddef.h>
#include <stdint.h>
#include "shmchan.h"

uint64_t shmchan_rs_sizeof(int which);
uint64_t shmchan_rs_sizeof(int which)
{
	switch (which) {
	case 0: return sizeof(struct shmchan_config);
	case 1: return sizeof(struct shmchan_info);
	case 2: return sizeof(struct shmchan_stats);
	case 3: return sizeof(struct shmchan_msg);
	case 4: return sizeof(struct shmchan_diag);
	case 5: return offsetof(struct shmchan_config, descriptor);
	case 6: return offsetof(struct shmchan_info, descriptor_size);
	case 7: return offsetof(struct shmchan_msg, data);
	case 8: return offsetof(struct shmchan_stats, writer_alive);
	default: return 0;
	}
}
