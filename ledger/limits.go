package ledger

// The limits of the ledger core, in one place (units last).
const (
	// BatchEventsMax is the most accounts or transfers in one request.
	BatchEventsMax = 8190
	// BizIDBytesMax is the longest business id a transfer may carry.
	BizIDBytesMax = 64
	// TransferCacheEntriesMax bounds the finished transfers a shard keeps in memory for
	// idempotency checks, and the leg results it keeps; older ones are looked up in storage
	// (pending ones are always kept). Past it the book trims (Book.Trim drops every finished
	// transfer at once), and under a load that never pauses the driver lets the round in
	// flight finish first (Driver.Wait). A large map cost every new transfer its look-ups
	// and the collector its scans: 2^15 and 2^16 against 2^20 gave row 1 of
	// bench/tbcompare.sh 24-26% more transfers a second and ledgerd half the memory; 2^16
	// leaves room for a round of eight requests of 8,190 without a trim after every round
	// (bench/RESULTS.md, session 14). Under full load a repeat more than about a tenth of a
	// second old is read from storage.
	TransferCacheEntriesMax = 1 << 16
	// RemoteAccountCacheEntriesMax bounds what a shard keeps of accounts on other shards.
	RemoteAccountCacheEntriesMax = 1 << 20
	// ShardsMax is the most shards a ledger may have.
	ShardsMax = 256
	// ExpiriesPerSweepMax bounds the pending transfers one expiry sweep releases.
	ExpiriesPerSweepMax = 8190
)
