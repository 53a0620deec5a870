import type { createClient } from 'redis'

/** A node-redis v5 client (the project's one Redis client family). */
export type RedisClient = ReturnType<typeof createClient>
