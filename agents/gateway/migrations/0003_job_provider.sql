-- The provider a job was matched with (its address, 0x-prefixed hex), set by JobMatched and
-- ResultSubmitted, cleared when the provider gives the job back (JobReleased). The gateway
-- fetches a job's outputs from the endpoints this provider announced on chain
-- (EndpointsAnnounced) before its configured outputs gateway. NULL until matched.
ALTER TABLE jobs ADD COLUMN provider TEXT;
