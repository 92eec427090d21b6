// PostgreSQL: business keys (store.h AcquireKeys / WakeKeyWaiters; the semantics of
// memory/memory_keys.cc). Schema v5 (kPgKeysMigration): the key table, triggers that queue a new
// transaction's keys in its INSERT and delete them in the UPDATE that makes it final (the same
// statement, so the same commit), and two functions that decide under per-key advisory locks.
//
// Several coordinators share the database: a decision takes each key's transaction-level advisory
// lock (sorted, with pg_try_advisory_xact_lock: a key another coordinator is deciding on counts as
// busy, so no lock wait and no deadlock), then reads the rows again in a new statement (a fresh
// snapshot in READ COMMITTED, taken after the previous decision on the key committed). A unique
// index allows one holder per key whatever happens above it.
#pragma once

#include <string_view>

namespace dtx::store::pg_keys {

// Advisory lock class of a key (the second half is hashtext(key)).
inline constexpr int kKeyLockClass = 1146704;

inline constexpr std::string_view kPgKeysMigration[] = {
    // seq: the transaction's trans_global.id, the FIFO order of every one of its keys. (The rows'
    // own ids interleave when transactions are inserted concurrently: ordering by them made two
    // multi-key transactions each first on one key and second on the other, waiting for each
    // other for ever.)
    "CREATE TABLE business_keys (id bigserial PRIMARY KEY, bkey text NOT NULL, gid text NOT NULL, "
    "seq bigint NOT NULL, held boolean NOT NULL DEFAULT false)",
    "CREATE INDEX business_keys_key ON business_keys (bkey, seq)",
    "CREATE INDEX business_keys_gid ON business_keys (gid)",
    "CREATE UNIQUE INDEX business_keys_holder ON business_keys (bkey) WHERE held",
    // The API stores the keys normalized in custom_data (core::WithKeySpec).
    R"sql(CREATE FUNCTION dtx_business_keys_queue() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
  BEGIN
    INSERT INTO business_keys (bkey, gid, seq)
      SELECT DISTINCT k, NEW.gid, NEW.id
      FROM jsonb_array_elements_text(NEW.custom_data::jsonb -> 'business_keys') AS k ORDER BY k;
  EXCEPTION WHEN invalid_text_representation OR invalid_parameter_value THEN
    NULL;  -- not JSON, or not an array: no keys (the API refuses both)
  END;
  RETURN NULL;
END $$)sql",
    "CREATE TRIGGER business_keys_queue AFTER INSERT ON trans_global FOR EACH ROW "
    "WHEN (position('\"business_keys\"' in NEW.custom_data) > 0) "
    "EXECUTE FUNCTION dtx_business_keys_queue()",
    R"sql(CREATE FUNCTION dtx_business_keys_release() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
  DELETE FROM business_keys WHERE gid = NEW.gid;
  RETURN NULL;
END $$)sql",
    "CREATE TRIGGER business_keys_release AFTER UPDATE OF status ON trans_global FOR EACH ROW "
    "WHEN (NEW.status IN ('succeed', 'failed') AND OLD.status IS DISTINCT FROM NEW.status) "
    "EXECUTE FUNCTION dtx_business_keys_release()",
    R"sql(CREATE FUNCTION dtx_acquire_keys(p_gid text, p_acquire boolean, p_wait_until bigint)
RETURNS TABLE (o_held boolean, o_waiting_for text, o_waiting_key text, o_contended boolean)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  r record;
  n bigint;
  all_held boolean;
BEGIN
  o_held := false;
  o_contended := false;
  -- A decision (acquire or park) is taken under the keys' locks; a read takes none.
  IF p_acquire OR p_wait_until > 0 THEN
    FOR r IN SELECT DISTINCT b.bkey FROM business_keys b WHERE b.gid = p_gid ORDER BY b.bkey LOOP
      IF NOT pg_try_advisory_xact_lock(1146704, hashtext(r.bkey)) THEN
        o_contended := true;
        EXIT;
      END IF;
    END LOOP;
  END IF;
  -- A new statement: a snapshot taken under the locks.
  SELECT count(*), coalesce(bool_and(b.held), true) INTO n, all_held
    FROM business_keys b WHERE b.gid = p_gid;
  IF n = 0 OR all_held THEN
    o_held := true;
    o_contended := false;
    RETURN NEXT;
    RETURN;
  END IF;
  -- Per key: its holder, else the earliest row ahead (index probes, not a scan of the queue).
  SELECT a.gid, m.bkey INTO o_waiting_for, o_waiting_key
    FROM business_keys m CROSS JOIN LATERAL (
      (SELECT h.gid FROM business_keys h WHERE h.bkey = m.bkey AND h.held AND h.gid <> p_gid)
      UNION ALL
      (SELECT e.gid FROM business_keys e WHERE e.bkey = m.bkey AND e.seq < m.seq
        ORDER BY e.seq LIMIT 1)
      LIMIT 1) a
    WHERE m.gid = p_gid ORDER BY m.bkey LIMIT 1;
  -- Another decision on one of the keys is in flight (a waker, or another coordinator's acquire):
  -- decide nothing. Parking now could overwrite the wake-up of a waker that just gave it the
  -- keys; the caller tries again.
  IF o_contended THEN
    RETURN NEXT;
    RETURN;
  END IF;
  IF o_waiting_for IS NULL AND p_acquire THEN
    UPDATE business_keys b SET held = true WHERE b.gid = p_gid AND NOT b.held;
    o_held := true;
    RETURN NEXT;
    RETURN;
  END IF;
  IF o_waiting_for IS NOT NULL AND p_wait_until > 0 THEN
    UPDATE trans_global t SET next_cron_time = p_wait_until, lease_until = 0
      WHERE t.gid = p_gid AND t.status IN ('prepared', 'submitted', 'aborting');
  END IF;
  RETURN NEXT;
END $$)sql",
    R"sql(CREATE FUNCTION dtx_wake_key_waiters(p_now bigint, p_limit integer)
RETURNS SETOF text LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  c record;
  k record;
  ok boolean;
BEGIN
  FOR c IN SELECT w.gid FROM business_keys w WHERE NOT w.held GROUP BY w.gid
      HAVING bool_and(NOT EXISTS (SELECT 1 FROM business_keys o WHERE o.bkey = w.bkey
                                  AND o.seq < w.seq)
                      AND NOT EXISTS (SELECT 1 FROM business_keys h WHERE h.bkey = w.bkey
                                      AND h.held))
      ORDER BY min(w.seq) LIMIT p_limit LOOP
    ok := true;
    FOR k IN SELECT DISTINCT b.bkey FROM business_keys b WHERE b.gid = c.gid ORDER BY b.bkey LOOP
      IF NOT pg_try_advisory_xact_lock(1146704, hashtext(k.bkey)) THEN
        ok := false;
        EXIT;
      END IF;
    END LOOP;
    CONTINUE WHEN NOT ok;
    -- A write of c in flight elsewhere (e.g. the final write of a waiter that timed out, which
    -- deletes its key rows) is skipped, not waited for: two batches waiting so in opposite orders
    -- would deadlock. The next re-check (one cron interval) looks again.
    PERFORM 1 FROM trans_global t WHERE t.gid = c.gid FOR UPDATE SKIP LOCKED;
    CONTINUE WHEN NOT FOUND;
    -- Under the locks, with a fresh snapshot: still first on every key, nobody holding.
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM business_keys m WHERE m.gid = c.gid AND NOT m.held);
    CONTINUE WHEN EXISTS (SELECT 1 FROM business_keys m WHERE m.gid = c.gid AND (
                            EXISTS (SELECT 1 FROM business_keys o WHERE o.bkey = m.bkey
                                    AND o.seq < m.seq)
                            OR EXISTS (SELECT 1 FROM business_keys h WHERE h.bkey = m.bkey
                                       AND h.held AND h.gid <> c.gid)));
    UPDATE business_keys b SET held = true WHERE b.gid = c.gid AND NOT b.held;
    UPDATE trans_global t SET next_cron_time = p_now
      WHERE t.gid = c.gid AND t.status IN ('prepared', 'submitted', 'aborting');
    RETURN NEXT c.gid;
  END LOOP;
END $$)sql",
};

// Schema v6: keys taken by a waiter that was parked (its wake-up is the park's: its timeout or a
// day away) bring its wake-up back to its round's lease in the same statement (due at once if no
// lease covers it), so that a crash never leaves it, and everything queued behind it, asleep
// until then (dtx-sim --workload keys, seed 3478).
inline constexpr std::string_view kPgKeysTakenMigration[] = {
    R"sql(CREATE FUNCTION dtx_business_keys_taken() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
  UPDATE trans_global t SET next_cron_time = t.lease_until
    WHERE t.gid = NEW.gid AND t.next_cron_time > t.lease_until
      AND t.status IN ('prepared', 'submitted', 'aborting');
  RETURN NULL;
END $$)sql",
    "CREATE TRIGGER business_keys_taken AFTER UPDATE OF held ON business_keys FOR EACH ROW "
    "WHEN (NEW.held AND NOT OLD.held) EXECUTE FUNCTION dtx_business_keys_taken()",
};

inline constexpr const char* kAcquireKeysSql =
    "SELECT o_held, o_waiting_for, o_waiting_key, o_contended FROM dtx_acquire_keys($1, "
    "$2::int8 <> 0, $3::int8)";
inline constexpr const char* kWakeKeysSql =
    "SELECT g FROM dtx_wake_key_waiters($1::int8, $2::int4) AS g";

}  // namespace dtx::store::pg_keys
