root shmchan.fb.Tensor
ident SHTN
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
table shmchan.fb.Tensor
field 0 dtype shmchan.fb.DType
field 1 shape [ulong]
field 2 strides [long]
field 3 data_offset ulong
field 4 data_size ulong
field 5 seq ulong
field 6 timestamp_ns ulong
