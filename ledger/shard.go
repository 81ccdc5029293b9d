package ledger

// TransitIDMin is the first id of the ledger's own accounts: client ids stay below it.
const TransitIDMin = uint64(1) << 63

// TransitAccountID is the id of shard's transit account for ledger: the account that holds the
// money of split transfers between their debit and credit legs.
func TransitAccountID(shard uint32, ledger uint32) uint64 {
	return TransitIDMin | uint64(shard)<<32 | uint64(ledger)
}

// IsTransit reports whether id names a transit account, and whose.
func IsTransit(id uint64) (shard uint32, ledger uint32, ok bool) {
	if id < TransitIDMin {
		return 0, 0, false
	}
	return uint32(id>>32) & 0x7fffffff, uint32(id), true
}

// ShardOf is the shard that owns the account: a fixed hash of its id, so that every node and
// every restart agrees.
func ShardOf(id uint64, shards uint32) uint32 {
	if s, _, ok := IsTransit(id); ok {
		return s
	}
	// splitmix64's finaliser spreads sequential ids evenly.
	z := id + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return uint32(z % uint64(shards))
}

// IDShard is the shard that arbitrates a transfer id: when shards book new transfers, the
// id's shard grants each id to one of them, so that one id never becomes two transfers on
// two shards.
func IDShard(id uint64, shards uint32) uint32 {
	z := id ^ 0x5851f42d4c957f2d
	z = (z ^ (z >> 33)) * 0xff51afd7ed558ccd
	z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53
	z ^= z >> 33
	return uint32(z % uint64(shards))
}
