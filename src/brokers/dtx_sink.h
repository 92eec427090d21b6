// The dtx coordinator as a relay sink: `dtx://host:port` (the coordinator's HTTP API at
// http://host:port/api/dtmsvr) or `dtxs://host:port` (HTTPS), with an optional API token. Each
// outbox message becomes one transactional message of the coordinator (msg mode, PROTOCOL.md §1.9)
// with gid = the message id and one step whose action is topic://<topic> and whose payload is the
// message's payload: the coordinator expands the topic to its current subscribers and POSTs the
// payload to each of them until it answers SUCCESS. The message id, the ordering key and the outbox
// headers travel as branch_headers (HTTP headers on every call): Dtx-Message-Id, Dtx-Key, then the
// headers as they are.
//
// Acknowledgement = the coordinator's 200 to the submit (the message is stored `submitted`).
// Re-publishing a message (at least once) submits the same gid again: the coordinator resumes the
// stored message instead of creating a second one (or answers 409 once it succeeded; the sink then
// queries the gid and acknowledges a msg that is submitted or succeed), so subscribers get each
// message id once per subscriber (plus the coordinator's own retries: make them idempotent). A
// topic without subscribers
// ("topic not found") is a transport failure: the row stays pending until someone subscribes.
// Other 4xx answers are refusals (parked); no answer, 5xx and 503 are transport failures.
//
// Per-key order of the publish, as with the brokers: a key's messages are submitted one at a time
// in batch order, the next only after the coordinator acknowledged the previous one; after a
// transport failure the key's later messages of the batch are held back (not submitted). Messages
// of different keys go up to 8 at once (8 threads per Publish, each with its own kept-alive
// connection). The coordinator then delivers each message on its own (retries with backoff per
// message, concurrently with others): subscribers can still see a key's messages out of order.
// A sink only: OpenConsumer refuses dtx:// (subscribers receive calls).
#pragma once

#include <memory>
#include <string_view>

#include "brokers/broker.h"

namespace dtx::brokers {

// dtx://host:port (HTTP) or dtxs://host:port (HTTPS; the certificate and host name are verified
// against the system's store plus options.ca_file). options.token goes to the coordinator as a
// bearer token. The CA file is read here: an unreadable one is kInvalidArgument at once, not a
// refusal of every row later.
Result<std::unique_ptr<Publisher>> OpenDtxPublisher(std::string_view url,
                                                    const PublisherOptions& options);

}  // namespace dtx::brokers
