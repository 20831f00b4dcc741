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
	case 9: return sizeof(struct shmchan_place_info);
	case 10: return offsetof(struct shmchan_config, kind);
	case 11: return offsetof(struct shmchan_config, _reserved);
	case 12: return offsetof(struct shmchan_info, kind);
	case 13: return offsetof(struct shmchan_info, policy);
	case 14: return offsetof(struct shmchan_msg, lost);
	case 15: return offsetof(struct shmchan_place_info, cursor);
	case 16: return offsetof(struct shmchan_place_info, empty_waits);
	/* the enum values the Rust constants copy */
	case 100: return SHMCHAN_KIND_SPSC;
	case 101: return SHMCHAN_KIND_BROADCAST;
	case 102: return SHMCHAN_KIND_STATE;
	case 103: return SHMCHAN_POLICY_BLOCK;
	case 104: return SHMCHAN_POLICY_OVERWRITE;
	case 105: return SHMCHAN_START_LATEST;
	case 106: return SHMCHAN_START_OLDEST;
	case 107: return SHMCHAN_ENOREADERS;
	case 108: return SHMCHAN_ENOTREG;
	default: return 0;
	}
}
