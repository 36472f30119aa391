-- The owner's grant to read a deployment's project files: an assertion the gateway signed,
-- addressed to project-service and limited to that one project, presented when the files are
-- uploaded (which may happen long after the create call, or on another replica).
CREATE TABLE deployment_file_grants (
    deployment_id TEXT COLLATE "C" PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    grant_token   TEXT NOT NULL
);
