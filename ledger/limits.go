package ledger

// The limits of the ledger core, in one place (units last).
const (
	// BatchEventsMax is the most accounts or transfers in one request.
	BatchEventsMax = 8190
	// BizIDBytesMax is the longest business id a transfer may carry.
	BizIDBytesMax = 64
	// TransferCacheEntriesMax bounds the finished transfers a shard keeps in memory for
	// idempotency checks; older ones are looked up in storage (pending ones are always
	// kept). A repeat older than a fraction of a second is read from storage whatever the
	// size, while a large map costs every new transfer its look-ups and the collector its
	// scans: 2^15 against 2^20 gave row 1 of bench/tbcompare.sh 26% more transfers a
	// second and ledgerd half the memory (bench/RESULTS.md, session 14).
	TransferCacheEntriesMax = 1 << 15
	// RemoteAccountCacheEntriesMax bounds what a shard keeps of accounts on other shards.
	RemoteAccountCacheEntriesMax = 1 << 20
	// ShardsMax is the most shards a ledger may have.
	ShardsMax = 256
	// ExpiriesPerSweepMax bounds the pending transfers one expiry sweep releases.
	ExpiriesPerSweepMax = 8190
)
