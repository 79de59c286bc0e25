//! Statistics over data records, as owstats reports them.
