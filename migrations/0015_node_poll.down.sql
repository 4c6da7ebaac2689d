DROP TABLE node_poll_state;
