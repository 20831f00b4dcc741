root shmchan.fb.Audio
ident SHAU
enum shmchan.fb.SampleFormat ubyte
value 0 Unknown
value 1 U8
value 2 S16
value 3 S32
value 4 F32
value 5 F64
value 6 S64
table shmchan.fb.Audio
field 0 seq ulong
field 1 timestamp_ns ulong
field 2 sample_rate uint
field 3 sample_format shmchan.fb.SampleFormat
field 4 planar bool
field 5 channels ushort
field 6 channel_layout string
field 7 samples uint
field 8 plane_stride ulong
field 9 pts long
field 10 time_base shmchan.fb.Rational
field 11 data_offset ulong
field 12 data_size ulong
struct shmchan.fb.Rational 8
field 0 num int
field 1 den int
