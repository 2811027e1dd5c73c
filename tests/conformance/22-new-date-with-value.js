// expect: {"result": ["1970-01-02T00:00:00.000Z", 2, 1577836800000]}
export const meta = { name: 'c', description: 'conformance' }
return [new Date(86400000).toISOString(), new Date('2026-01-02').getUTCDate(), Date.UTC(2020, 0, 1)]
