DROP TABLE run_events;
DROP TABLE node_states;
DROP TABLE runs;
DROP TABLE workflow_definitions;
