package ledger

// The limits of the ledger core, in one place (units last).
const (
	// BatchEventsMax is the most accounts or transfers in one request.
	BatchEventsMax = 8190
	// BizIDBytesMax is the longest business id a transfer may carry.
	BizIDBytesMax = 64
	// TransferCacheEntriesMax bounds the finished transfers a shard keeps in memory for
	// idempotency checks; older ones are looked up in storage.
	TransferCacheEntriesMax = 1 << 20
	// RemoteAccountCacheEntriesMax bounds what a shard keeps of accounts on other shards.
	RemoteAccountCacheEntriesMax = 1 << 20
	// ShardsMax is the most shards a ledger may have.
	ShardsMax = 256
	// ExpiriesPerSweepMax bounds the pending transfers one expiry sweep releases.
	ExpiriesPerSweepMax = 8190
)
