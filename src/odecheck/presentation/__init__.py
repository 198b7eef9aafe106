"""Writers: figures (plot), terminal tables (render) and verify's report files (report). They draw the data
they are handed; the experiments below them in the import order write their reports as they go."""
