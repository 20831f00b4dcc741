root shmchan.fb.ChannelInfo
ident SHCI
enum shmchan.fb.ChannelKind ubyte
value 0 Unknown
value 1 Spsc
value 2 Broadcast
value 3 State
enum shmchan.fb.DType ubyte
value 0 Unknown
value 1 Bool
value 2 Int8
value 3 UInt8
value 4 Int16
value 5 UInt16
value 6 Int32
value 7 UInt32
value 8 Int64
value 9 UInt64
value 10 Float16
value 11 Float32
value 12 Float64
value 13 Complex64
value 14 Complex128
table shmchan.fb.ChannelInfo
field 0 kind shmchan.fb.ChannelKind
field 1 slot_size ulong
field 2 capacity uint
field 3 slot_align uint
field 4 payload shmchan.fb.PayloadSchema
field 5 dtype shmchan.fb.DType
field 6 shape [long]
field 7 metadata [shmchan.fb.KeyValue]
field 8 numpy_descr string
table shmchan.fb.KeyValue
field 0 key string
field 1 value string
table shmchan.fb.PayloadSchema
field 0 name string
field 1 file_identifier string
field 2 fingerprint ulong
field 3 signature string
field 4 bfbs [ubyte]
