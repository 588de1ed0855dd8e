"""The lab: inventories, transports (local, SSH), boards, the runner command, device images and
Ansible playbooks."""
