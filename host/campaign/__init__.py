"""Campaigns: plan the device × model × configuration matrix, run and resume it, store its cells."""
