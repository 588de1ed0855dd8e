"""The lab: inventories, transports, boards (deploy, facts, runner command), images, playbooks."""
