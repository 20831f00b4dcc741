root shmchan.fb.Packet
ident SHPK
table shmchan.fb.Packet
field 0 seq ulong
field 1 timestamp_ns ulong
field 2 codec string
field 3 pts long
field 4 dts long
field 5 duration long
field 6 time_base shmchan.fb.Rational
field 7 keyframe bool
field 8 extradata [ubyte]
field 9 data_offset ulong
field 10 data_size ulong
field 11 width uint
field 12 height uint
struct shmchan.fb.Rational 8
field 0 num int
field 1 den int
