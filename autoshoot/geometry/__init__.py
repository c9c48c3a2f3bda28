"""Geometry: segment the product, find its handle, erase the grip gap, scale and place it."""
